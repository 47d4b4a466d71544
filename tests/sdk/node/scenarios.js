#!/usr/bin/env node
/*
 * Interop scenarios with the official RocketMQ 5 Node.js SDK (npm rocketmq-client-nodejs
 * 1.0.8, pinned in package.json / package-lock.json, installed by scripts/test).
 *
 * Run by tests/it/grpc_sdk_node.rs (through tests/it/grpc_sdk_scripts.rs) against a
 * rocketgate gRPC endpoint on 127.0.0.1 whose broker has the topics test_topic (NORMAL),
 * fifo_test (FIFO), delay_test (DELAY) and transaction_test (TRANSACTION); never needs
 * anything else. One scenario per invocation, the same ones as
 * tests/sdk/python/scenarios.py; the script reports what it saw and the Rust test judges it:
 *
 * - simple: a producer sends one message with a tag, two keys and two properties; a
 *   SimpleConsumer (tag filter) receives it, the script acknowledges it and keeps receiving
 *   for the invisible duration plus 3 s to see whether it comes back.
 * - push: a producer sends --count messages; a PushConsumer's listener records every
 *   delivery and returns SUCCESS (the SDK acknowledges); the script waits for all of them,
 *   then 3 s more for extra deliveries.
 * - fifo: a producer sends --count messages to each of two message groups, interleaved; a
 *   SimpleConsumer receives them one per receive and records their order; it acknowledges
 *   each one except the first delivery of group-a's first message, which comes back after
 *   the invisible duration (group-a's later messages must wait for it, group-b's need not).
 * - delay: a SimpleConsumer polls; a producer sends one message whose delivery timestamp
 *   is 3.5 s ahead; the script records when each receive started and returned and when the
 *   message came.
 * - transaction: a transaction producer (its checker answers COMMIT for the body
 *   "unknown-then-commit", ROLLBACK otherwise, and records every call) sends three half
 *   messages: one committed, one rolled back, one left unresolved; a SimpleConsumer
 *   receives until the committed and the checked-back ones came, then 3 s more.
 *
 * Usage: node scenarios.js MODE --endpoint HOST:PORT --topic T --group G
 *        [--count N] [--invisible SECONDS] [--timeout SECONDS]
 *
 * Times are wall-clock milliseconds since the epoch (the broker runs on the same machine).
 * Prints one JSON object on stdout. Exits non-zero (with the reason on stderr) on any error
 * or when the awaited messages do not come within --timeout seconds.
 */
'use strict';

const crypto = require('node:crypto');
const {
  Producer, SimpleConsumer, PushConsumer, ConsumeResult,
} = require('rocketmq-client-nodejs');
const { TransactionResolution } = require('rocketmq-client-nodejs/proto/apache/rocketmq/v2/definition_pb');

// Milliseconds a SimpleConsumer long-polls (the server caps it at its own limit).
const AWAIT_MS = 5000;
// Milliseconds the script keeps watching after the awaited messages came, for extra deliveries.
const QUIET_MS = 3000;

// The SDK logs to ~/logs/rocketmq by default; warnings and errors go to stderr here instead
// (shown when a test fails), the rest is dropped.
const logger = {
  info() {},
  debug() {},
  warn(...args) { console.error('[sdk warn]', ...args); },
  error(...args) { console.error('[sdk error]', ...args); },
};

function parseArgs(argv) {
  const modes = [ 'simple', 'push', 'fifo', 'delay', 'transaction' ];
  const args = { count: 10, invisible: 10, timeout: 30 };
  const [ mode, ...rest ] = argv;
  if (!modes.includes(mode)) {
    throw new Error(`mode must be one of ${modes.join(', ')}, got ${mode}`);
  }
  args.mode = mode;
  for (let i = 0; i < rest.length; i += 2) {
    const key = rest[i].replace(/^--/, '');
    const value = rest[i + 1];
    if (value === undefined) throw new Error(`--${key} needs a value`);
    args[key] = [ 'count', 'invisible', 'timeout' ].includes(key) ? Number(value) : value;
  }
  for (const key of [ 'endpoint', 'topic', 'group' ]) {
    if (!args[key]) throw new Error(`--${key} is required`);
  }
  return args;
}

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

/** What the test compares of a received message. */
function view(m) {
  return {
    message_id: m.messageId,
    topic: m.topic,
    body: m.body.toString(),
    tag: m.tag || null,
    keys: [ ...m.keys ].sort(),
    properties: Object.fromEntries(m.properties),
    message_group: m.messageGroup || null,
    delivery_timestamp_ms: m.deliveryTimestamp ? m.deliveryTimestamp.getTime() : null,
    delivery_attempt: m.deliveryAttempt ?? null,
  };
}

function base(args) {
  return { endpoints: args.endpoint, namespace: '', logger };
}

async function started(client) {
  await client.startup();
  return client;
}

function simpleConsumer(args, expression = '*') {
  return started(new SimpleConsumer({
    ...base(args),
    consumerGroup: args.group,
    subscriptions: new Map([[ args.topic, expression ]]),
    awaitDuration: AWAIT_MS,
  }));
}

function producer(args, checker) {
  return started(new Producer({ ...base(args), topics: [ args.topic ], checker }));
}

async function receive(consumer, args) {
  return await consumer.receive(16, args.invisible * 1000);
}

async function simple(args) {
  const run = crypto.randomBytes(4).toString('hex');
  const tag = 'TagA';
  const keys = [ `key-${run}`, `order-${run}` ];
  const properties = { color: 'blue', run };
  const body = `hello from node ${run}`;
  const consumer = await simpleConsumer(args, tag);
  const p = await producer(args);
  try {
    const receipt = await p.send({
      topic: args.topic, body: Buffer.from(body), tag, keys,
      properties: new Map(Object.entries(properties)),
    });
    const sent = {
      message_id: receipt.messageId, topic: args.topic, body, tag,
      keys: [ ...keys ].sort(), properties,
    };
    const deadline = Date.now() + args.timeout * 1000;
    let received = null;
    const others = [];
    while (!received && Date.now() < deadline) {
      for (const m of await receive(consumer, args)) {
        if (m.messageId === receipt.messageId && !received) received = m;
        else others.push(view(m));
      }
    }
    if (!received) throw new Error(`${receipt.messageId} not received within ${args.timeout} s`);
    await consumer.ack(received);
    const ackedAt = Date.now();
    const again = [];
    while (Date.now() < ackedAt + args.invisible * 1000 + QUIET_MS) {
      again.push(...(await receive(consumer, args)).map(view));
    }
    return {
      mode: 'simple', sent, received: view(received), others,
      invisible_s: args.invisible, watched_after_ack_s: (Date.now() - ackedAt) / 1000, again,
    };
  } finally {
    await p.shutdown();
    await consumer.shutdown();
  }
}

async function push(args) {
  const p = await producer(args);
  const deliveries = [];
  let consumer = null;
  try {
    const sent = [];
    for (let i = 0; i < args.count; i++) {
      sent.push((await p.send({ topic: args.topic, body: Buffer.from(`push-${i}`), tag: 'push' })).messageId);
    }
    let done;
    const all = new Promise(resolve => { done = resolve; });
    consumer = await started(new PushConsumer({
      ...base(args),
      consumerGroup: args.group,
      subscriptions: new Map([[ args.topic, '*' ]]),
      messageListener: {
        async consume(m) {
          deliveries.push(view(m));
          const seen = new Set(deliveries.map(d => d.message_id));
          if (sent.every(id => seen.has(id))) done();
          return ConsumeResult.SUCCESS;
        },
      },
    }));
    const timedOut = Symbol('timeout');
    const first = await Promise.race([ all, sleep(args.timeout * 1000).then(() => timedOut) ]);
    if (first === timedOut) {
      throw new Error(`not all ${args.count} sent messages delivered within ${args.timeout} s: `
        + JSON.stringify(deliveries));
    }
    await sleep(QUIET_MS); // a window for extra deliveries, not a synchronisation
    return { mode: 'push', sent, deliveries: [ ...deliveries ], quiet_s: QUIET_MS / 1000 };
  } finally {
    if (consumer) await consumer.shutdown();
    await p.shutdown();
  }
}

async function fifo(args) {
  const groups = [ 'group-a', 'group-b' ];
  const p = await producer(args);
  let consumer = null;
  try {
    const sent = [];
    for (let i = 0; i < args.count; i++) {
      for (const g of groups) {
        const body = `${g}-${i}`;
        const receipt = await p.send({
          topic: args.topic, body: Buffer.from(body), tag: 'fifo', messageGroup: g,
        });
        sent.push({ message_id: receipt.messageId, message_group: g, body });
      }
    }
    consumer = await simpleConsumer(args);
    // One message per receive; the first delivery of group-a-0 is not acknowledged, so it
    // comes back after --invisible seconds, and group-a must wait for it.
    const received = [];
    const acked = new Set();
    const deadline = Date.now() + args.timeout * 1000;
    while (acked.size < sent.length && Date.now() < deadline) {
      for (const m of await consumer.receive(1, args.invisible * 1000)) {
        received.push({ ...view(m), received_at_ms: Date.now() });
        if (m.body.toString() === 'group-a-0' && m.deliveryAttempt === 1) continue;
        await consumer.ack(m);
        acked.add(m.messageId);
      }
    }
    if (acked.size < sent.length) {
      throw new Error(`${acked.size} of ${sent.length} acknowledged within ${args.timeout} s: `
        + JSON.stringify(received));
    }
    return { mode: 'fifo', sent, received, invisible_s: args.invisible };
  } finally {
    if (consumer) await consumer.shutdown();
    await p.shutdown();
  }
}

async function delay(args) {
  const consumer = await simpleConsumer(args);
  const p = await producer(args);
  try {
    const sentAt = Date.now();
    const deliverAt = sentAt + 3500;
    const receipt = await p.send({
      topic: args.topic, body: Buffer.from('later'), tag: 'delay',
      deliveryTimestamp: new Date(deliverAt),
    });
    const polls = [];
    let received = null;
    let receivedAt = null;
    const deadline = Date.now() + args.timeout * 1000;
    while (!received && Date.now() < deadline) {
      const start = Date.now();
      const got = await receive(consumer, args);
      const end = Date.now();
      polls.push({ start_ms: start, end_ms: end, ids: got.map(m => m.messageId) });
      for (const m of got) {
        if (m.messageId === receipt.messageId) {
          received = m;
          receivedAt = end;
          await consumer.ack(m);
        }
      }
    }
    if (!received) throw new Error(`${receipt.messageId} not received within ${args.timeout} s`);
    return {
      mode: 'delay', message_id: receipt.messageId, sent_at_ms: sentAt,
      deliver_at_ms: deliverAt, received_at_ms: receivedAt, received: view(received), polls,
    };
  } finally {
    await p.shutdown();
    await consumer.shutdown();
  }
}

async function transaction(args) {
  const calls = [];
  const checker = {
    async check(m) {
      const body = m.body.toString();
      calls.push({ message_id: m.messageId, topic: m.topic, body, at_ms: Date.now() });
      return body === 'unknown-then-commit' ? TransactionResolution.COMMIT : TransactionResolution.ROLLBACK;
    },
  };
  const consumer = await simpleConsumer(args);
  const p = await producer(args, checker);
  try {
    const sent = {};
    for (const body of [ 'commit', 'rollback', 'unknown-then-commit' ]) {
      const tx = p.beginTransaction();
      const receipt = await p.send({ topic: args.topic, body: Buffer.from(body), tag: 'tx' }, tx);
      sent[body] = {
        message_id: receipt.messageId, transaction_id: receipt.transactionId, at_ms: Date.now(),
      };
      if (body === 'commit') await tx.commit();
      else if (body === 'rollback') await tx.rollback();
    }
    const want = [ sent.commit.message_id, sent['unknown-then-commit'].message_id ];
    const received = [];
    const deadline = Date.now() + args.timeout * 1000;
    let quietUntil = null;
    while (Date.now() < (quietUntil ?? deadline)) {
      for (const m of await receive(consumer, args)) {
        received.push({ ...view(m), received_at_ms: Date.now() });
        await consumer.ack(m);
      }
      const ids = new Set(received.map(r => r.message_id));
      if (quietUntil === null && want.every(id => ids.has(id))) quietUntil = Date.now() + QUIET_MS;
    }
    if (quietUntil === null) {
      throw new Error(`committed and checked-back messages not both received within ${args.timeout} s: `
        + `received ${JSON.stringify(received)}, checks ${JSON.stringify(calls)}`);
    }
    return { mode: 'transaction', sent, received, checks: [ ...calls ] };
  } finally {
    await p.shutdown();
    await consumer.shutdown();
  }
}

const MODES = { simple, push, fifo, delay, transaction };

async function main() {
  const args = parseArgs(process.argv.slice(2));
  return JSON.stringify(await MODES[args.mode](args));
}

main().then(
  // The SDK's gRPC channels and timers may keep the event loop alive after shutdown.
  line => process.stdout.write(`${line}\n`, () => process.exit(0)),
  err => {
    console.error(`error: ${err && err.stack ? err.stack : err}`);
    process.exit(1);
  },
);
