#!/usr/bin/env python3
"""Redelivery timing with the official RocketMQ 5 Python SDK (rocketmq-python-client 5.1.2).

Run by tests/it/grpc_sdk_python.rs against a rocketgate gRPC endpoint on 127.0.0.1; never
needs anything else. Two modes:

- simple: a producer sends one message; a SimpleConsumer receives it with an invisible
  duration and never acknowledges it; the script waits until the same message is received
  again and reports how long after the end of the invisible time that was.
- push: a producer sends one message; a PushConsumer's listener fails its first delivery (the
  SDK then stretches the invisible time by the backoff the server advertises) and succeeds on
  the second; the script reports the time between the failure and the retry.

Prints one JSON object on stdout. Exits non-zero (with the reason on stderr) on any error or
when nothing comes back within --timeout seconds.
"""

import argparse
import json
import sys
import threading
import time

from rocketmq import (ClientConfiguration, ConsumeResult, Credentials,
                      FilterExpression, Message, MessageListener, Producer,
                      PushConsumer, SimpleConsumer)


def send_one(config, topic, body):
    producer = Producer(config, (topic,))
    producer.startup()
    try:
        message = Message()
        message.topic = topic
        message.body = body.encode()
        return producer.send(message).message_id
    finally:
        producer.shutdown()


def simple(config, args):
    message_id = send_one(config, args.topic, "redeliver me")
    consumer = SimpleConsumer(config, args.group, {args.topic: FilterExpression()},
                              await_duration=5)
    consumer.startup()
    try:
        deadline = time.monotonic() + args.timeout
        first = None
        while time.monotonic() < deadline:
            for m in consumer.receive(16, args.invisible) or []:
                if m.message_id != message_id:
                    continue
                now = time.time()
                if first is None:
                    first = (now, m.delivery_attempt)
                    continue
                return {
                    "mode": "simple",
                    "invisible_s": args.invisible,
                    "first_attempt": first[1],
                    "attempt": m.delivery_attempt,
                    "back_after_s": now - first[0],
                    "after_invisible_end_s": now - first[0] - args.invisible,
                }
        raise SystemExit(f"not received again within {args.timeout} s (first: {first})")
    finally:
        consumer.shutdown()


class FailOnce(MessageListener):
    def __init__(self, message_id):
        self.message_id = message_id
        self.deliveries = []
        self.done = threading.Event()

    def consume(self, message):
        if message.message_id != self.message_id:
            return ConsumeResult.SUCCESS
        self.deliveries.append((time.time(), message.delivery_attempt))
        if len(self.deliveries) == 1:
            return ConsumeResult.FAILURE
        self.done.set()
        return ConsumeResult.SUCCESS


def push(config, args):
    message_id = send_one(config, args.topic, "fail me once")
    listener = FailOnce(message_id)
    consumer = PushConsumer(config, args.group, listener, {args.topic: FilterExpression()})
    consumer.startup()
    try:
        if not listener.done.wait(args.timeout):
            raise SystemExit(f"no retry within {args.timeout} s: {listener.deliveries}")
        (t1, a1), (t2, a2) = listener.deliveries[0], listener.deliveries[1]
        return {
            "mode": "push",
            "first_attempt": a1,
            "attempt": a2,
            "retry_after_s": t2 - t1,
        }
    finally:
        consumer.shutdown()


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=["simple", "push"])
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--invisible", type=int, default=3, help="seconds (simple mode)")
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
    config = ClientConfiguration(args.endpoint, Credentials())
    result = simple(config, args) if args.mode == "simple" else push(config, args)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    try:
        main()
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001 - report any SDK failure as a test failure
        print(f"error: {e!r}", file=sys.stderr)
        sys.exit(1)
