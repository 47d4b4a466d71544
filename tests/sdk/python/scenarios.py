#!/usr/bin/env python3
"""Interop scenarios with the official RocketMQ 5 Python SDK (rocketmq-python-client 5.1.2).

Run by tests/it/grpc_sdk_python.rs (through tests/it/grpc_sdk_scripts.rs) against a
rocketgate gRPC endpoint on 127.0.0.1 whose broker has the topics test_topic (NORMAL),
fifo_test (FIFO), delay_test (DELAY) and transaction_test (TRANSACTION); never needs
anything else. One scenario per invocation; the script reports what it saw and the Rust
test judges it:

- simple: a producer sends one message with a tag, two keys and two properties; a
  SimpleConsumer (tag filter) receives it, the script acknowledges it and keeps receiving
  for the invisible duration plus 3 s to see whether it comes back.
- push: a producer sends --count messages; a PushConsumer's listener records every
  delivery and returns SUCCESS (the SDK acknowledges); the script waits for all of them,
  then 3 s more for extra deliveries.
- fifo: a producer sends --count messages to each of two message groups, interleaved; a
  SimpleConsumer receives them one per receive and records their order; it acknowledges
  each one except the first delivery of group-a's first message, which comes back after
  the invisible duration (group-a's later messages must wait for it, group-b's need not).
- delay: a SimpleConsumer polls; a producer sends one message whose delivery timestamp is
  3 to 4 s ahead (the SDK sends whole seconds); the script records when each receive
  started and returned and when the message came.
- transaction: a transaction producer (its checker answers COMMIT for the body
  "unknown-then-commit", ROLLBACK otherwise, and records every call) sends three half
  messages: one committed, one rolled back, one left unresolved; a SimpleConsumer receives
  until the committed and the checked-back ones came, then 3 s more.

Times are wall-clock milliseconds since the epoch (the broker runs on the same machine).
Prints one JSON object on stdout. Exits non-zero (with the reason on stderr) on any error
or when the awaited messages do not come within --timeout seconds.
"""

import argparse
import json
import sys
import threading
import time
import uuid

from rocketmq import (ClientConfiguration, ConsumeResult, Credentials,
                      FilterExpression, Message, MessageListener, Producer,
                      PushConsumer, SimpleConsumer, TransactionChecker,
                      TransactionResolution)

# Seconds a SimpleConsumer long-polls (the server caps it at its own limit).
AWAIT_S = 5
# Seconds the script keeps watching after the awaited messages came, for extra deliveries.
QUIET_S = 3


def now_ms():
    return int(time.time() * 1000)


def view(m):
    """What the test compares of a received message."""
    return {
        "message_id": m.message_id,
        "topic": m.topic,
        "body": m.body.decode(),
        "tag": m.tag,
        "keys": sorted(m.keys),
        "properties": dict(m.properties),
        "message_group": m.message_group,
        "delivery_timestamp_ms": m.delivery_timestamp,
        "delivery_attempt": m.delivery_attempt,
    }


def started(client):
    client.startup()
    return client


def new_message(topic, body, tag=None, keys=(), properties=None, group=None,
                delivery_s=None):
    m = Message()
    m.topic = topic
    m.body = body.encode()
    if tag:
        m.tag = tag
    for k in keys:
        m.keys = k
    for k, v in (properties or {}).items():
        m.add_property(k, v)
    if group:
        m.message_group = group
    if delivery_s:
        m.delivery_timestamp = delivery_s
    return m


def simple_consumer(config, args, expression="*"):
    return started(SimpleConsumer(config, args.group,
                                  {args.topic: FilterExpression(expression)},
                                  await_duration=AWAIT_S))


def simple(config, args):
    run = uuid.uuid4().hex[:8]
    tag = "TagA"
    keys = [f"key-{run}", f"order-{run}"]
    properties = {"color": "blue", "run": run}
    body = f"hello from python {run}"
    consumer = simple_consumer(config, args, tag)
    producer = started(Producer(config, (args.topic,)))
    try:
        receipt = producer.send(new_message(args.topic, body, tag, keys, properties))
        sent = {"message_id": receipt.message_id, "topic": args.topic, "body": body,
                "tag": tag, "keys": sorted(keys), "properties": properties}
        deadline = time.monotonic() + args.timeout
        received, others = None, []
        while received is None and time.monotonic() < deadline:
            for m in consumer.receive(16, args.invisible) or []:
                if m.message_id == receipt.message_id and received is None:
                    received = m
                else:
                    others.append(view(m))
        if received is None:
            raise SystemExit(f"{receipt.message_id} not received within {args.timeout} s")
        consumer.ack(received)
        acked_at = time.monotonic()
        again = []
        while time.monotonic() < acked_at + args.invisible + QUIET_S:
            again.extend(view(m) for m in consumer.receive(16, args.invisible) or [])
        return {"mode": "simple", "sent": sent, "received": view(received),
                "others": others, "invisible_s": args.invisible,
                "watched_after_ack_s": time.monotonic() - acked_at, "again": again}
    finally:
        producer.shutdown()
        consumer.shutdown()


class Recorder(MessageListener):
    def __init__(self, want):
        self.want = set(want)
        self.lock = threading.Lock()
        self.deliveries = []
        self.done = threading.Event()

    def consume(self, message):
        with self.lock:
            self.deliveries.append(view(message))
            if self.want <= {d["message_id"] for d in self.deliveries}:
                self.done.set()
        return ConsumeResult.SUCCESS


def push(config, args):
    producer = started(Producer(config, (args.topic,)))
    consumer = None
    try:
        sent = [producer.send(new_message(args.topic, f"push-{i}", "push")).message_id
                for i in range(args.count)]
        recorder = Recorder(sent)
        consumer = started(PushConsumer(config, args.group, recorder,
                                        {args.topic: FilterExpression()}))
        if not recorder.done.wait(args.timeout):
            raise SystemExit(f"not all {args.count} sent messages delivered "
                             f"within {args.timeout} s: {recorder.deliveries}")
        time.sleep(QUIET_S)  # a window for extra deliveries, not a synchronisation
        with recorder.lock:
            deliveries = list(recorder.deliveries)
        return {"mode": "push", "sent": sent, "deliveries": deliveries, "quiet_s": QUIET_S}
    finally:
        if consumer is not None:
            consumer.shutdown()
        producer.shutdown()


def fifo(config, args):
    groups = ["group-a", "group-b"]
    producer = started(Producer(config, (args.topic,)))
    consumer = None
    try:
        sent = []
        for i in range(args.count):
            for g in groups:
                body = f"{g}-{i}"
                receipt = producer.send(new_message(args.topic, body, "fifo", group=g))
                sent.append({"message_id": receipt.message_id, "message_group": g,
                             "body": body})
        consumer = simple_consumer(config, args)
        # One message per receive; the first delivery of group-a-0 is not acknowledged, so
        # it comes back after --invisible seconds, and group-a must wait for it.
        received, acked = [], set()
        deadline = time.monotonic() + args.timeout
        while len(acked) < len(sent) and time.monotonic() < deadline:
            for m in consumer.receive(1, args.invisible) or []:
                received.append(dict(view(m), received_at_ms=now_ms()))
                if m.body.decode() == "group-a-0" and m.delivery_attempt == 1:
                    continue
                consumer.ack(m)
                acked.add(m.message_id)
        if len(acked) < len(sent):
            raise SystemExit(f"{len(acked)} of {len(sent)} acknowledged within "
                             f"{args.timeout} s: {received}")
        return {"mode": "fifo", "sent": sent, "received": received,
                "invisible_s": args.invisible}
    finally:
        if consumer is not None:
            consumer.shutdown()
        producer.shutdown()


def delay(config, args):
    consumer = simple_consumer(config, args)
    producer = started(Producer(config, (args.topic,)))
    try:
        # The SDK sends whole seconds: 3 to 4 s ahead.
        deliver_s = int(time.time()) + 4
        sent_at = now_ms()
        receipt = producer.send(new_message(args.topic, "later", "delay",
                                            delivery_s=deliver_s))
        polls, received, received_at = [], None, None
        deadline = time.monotonic() + args.timeout
        while received is None and time.monotonic() < deadline:
            start = now_ms()
            got = consumer.receive(16, args.invisible) or []
            end = now_ms()
            polls.append({"start_ms": start, "end_ms": end,
                          "ids": [m.message_id for m in got]})
            for m in got:
                if m.message_id == receipt.message_id:
                    received, received_at = m, end
                    consumer.ack(m)
        if received is None:
            raise SystemExit(f"{receipt.message_id} not received within {args.timeout} s")
        return {"mode": "delay", "message_id": receipt.message_id, "sent_at_ms": sent_at,
                "deliver_at_ms": deliver_s * 1000, "received_at_ms": received_at,
                "received": view(received), "polls": polls}
    finally:
        producer.shutdown()
        consumer.shutdown()


class Checker(TransactionChecker):
    def __init__(self):
        self.lock = threading.Lock()
        self.calls = []

    def check(self, message):
        body = message.body.decode()
        with self.lock:
            self.calls.append({"message_id": message.message_id, "topic": message.topic,
                               "body": body, "at_ms": now_ms()})
        if body == "unknown-then-commit":
            return TransactionResolution.COMMIT
        return TransactionResolution.ROLLBACK


def transaction(config, args):
    checker = Checker()
    consumer = simple_consumer(config, args)
    producer = started(Producer(config, (args.topic,), checker))
    try:
        sent = {}
        for body in ["commit", "rollback", "unknown-then-commit"]:
            tx = producer.begin_transaction()
            receipt = producer.send(new_message(args.topic, body, "tx"), tx)
            sent[body] = {"message_id": receipt.message_id,
                          "transaction_id": receipt.transaction_id, "at_ms": now_ms()}
            if body == "commit":
                tx.commit()
            elif body == "rollback":
                tx.rollback()
        want = {sent["commit"]["message_id"], sent["unknown-then-commit"]["message_id"]}
        received = []
        deadline = time.monotonic() + args.timeout
        quiet_until = None
        while time.monotonic() < (quiet_until or deadline):
            for m in consumer.receive(16, args.invisible) or []:
                received.append(dict(view(m), received_at_ms=now_ms()))
                consumer.ack(m)
            if quiet_until is None and want <= {r["message_id"] for r in received}:
                quiet_until = time.monotonic() + QUIET_S
        if quiet_until is None:
            raise SystemExit(f"committed and checked-back messages not both received within "
                             f"{args.timeout} s: received {received}, checks {checker.calls}")
        with checker.lock:
            calls = list(checker.calls)
        return {"mode": "transaction", "sent": sent, "received": received, "checks": calls}
    finally:
        producer.shutdown()
        consumer.shutdown()


MODES = {"simple": simple, "push": push, "fifo": fifo, "delay": delay,
         "transaction": transaction}


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=sorted(MODES))
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--count", type=int, default=10, help="messages (push) or per group (fifo)")
    parser.add_argument("--invisible", type=int, default=10, help="seconds")
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
    config = ClientConfiguration(args.endpoint, Credentials())
    print(json.dumps(MODES[args.mode](config, args)), flush=True)


if __name__ == "__main__":
    try:
        main()
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001 - report any SDK failure as a test failure
        print(f"error: {e!r}", file=sys.stderr)
        sys.exit(1)
