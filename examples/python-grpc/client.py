#!/usr/bin/env python3
"""A raw gRPC client of rocketgate: no RocketMQ SDK, only stubs generated from proto/.

It speaks apache.rocketmq.v2.MessagingService the way any gRPC stack can: QueryRoute, SendMessage,
Heartbeat, ReceiveMessage and AckMessage, with the `x-mq-client-id` header the protocol needs.

    pip install -r requirements.txt
    python3 client.py --target 127.0.0.1:8081 --topic test_topic --count 3

The stubs are generated at start into a temporary directory with grpcio-tools (which ships its
own protoc), from the repository's proto/ directory. Exits non-zero if anything fails.
"""

import argparse
import os
import socket
import sys
import tempfile
import time
import uuid

from grpc_tools import protoc
import grpc


HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_ROOT = os.path.normpath(os.path.join(HERE, "..", "..", "proto"))


def generate_stubs():
    out = tempfile.mkdtemp(prefix="rocketgate-stubs-")
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    files = ["apache/rocketmq/v2/definition.proto", "apache/rocketmq/v2/service.proto"]
    code = protoc.main(
        ["grpc_tools.protoc", f"-I{PROTO_ROOT}", f"-I{include}",
         f"--python_out={out}", f"--grpc_python_out={out}"] + files
    )
    if code != 0:
        sys.exit(f"protoc failed with {code}")
    sys.path.insert(0, out)
    from apache.rocketmq.v2 import definition_pb2, service_pb2, service_pb2_grpc  # noqa: E402
    return definition_pb2, service_pb2, service_pb2_grpc


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="127.0.0.1:8081")
    parser.add_argument("--topic", default="test_topic")
    parser.add_argument("--group", default="PythonRawGroup")
    parser.add_argument("--count", type=int, default=1)
    args = parser.parse_args()

    d, s, stubs = generate_stubs()
    client_id = f"{socket.gethostname()}@{os.getpid()}#python"
    meta = (("x-mq-client-id", client_id), ("x-mq-language", "PYTHON"))
    channel = grpc.insecure_channel(args.target)
    api = stubs.MessagingServiceStub(channel)
    ok = d.Code.Value("OK")
    topic = d.Resource(name=args.topic)

    route = api.QueryRoute(s.QueryRouteRequest(topic=topic), metadata=meta, timeout=5)
    if route.status.code != ok:
        sys.exit(f"QueryRoute: {d.Code.Name(route.status.code)} {route.status.message}")
    queues = [(q.broker.name, q.id) for q in route.message_queues]
    print(f"route of {args.topic}: {len(queues)} queues {queues}")

    sent = set()
    for i in range(args.count):
        message_id = uuid.uuid4().hex.upper()
        props = d.SystemProperties(
            tag="test_tag", keys=[f"py-{i}"], message_id=message_id,
            message_type=d.MessageType.Value("NORMAL"),
            body_encoding=d.Encoding.Value("IDENTITY"), born_host=socket.gethostname(),
        )
        props.born_timestamp.FromMilliseconds(int(time.time() * 1000))
        reply = api.SendMessage(
            s.SendMessageRequest(messages=[d.Message(
                topic=topic, system_properties=props, body=f"hello from python {i}".encode(),
                user_properties={"origin": "python-raw-grpc"})]),
            metadata=meta, timeout=5)
        if reply.status.code != ok:
            sys.exit(f"SendMessage: {d.Code.Name(reply.status.code)} {reply.status.message}")
        print(f"sent message_id={reply.entries[0].message_id}")
        sent.add(message_id)

    group = d.Resource(name=args.group)
    api.Heartbeat(s.HeartbeatRequest(group=group, client_type=d.ClientType.Value("SIMPLE_CONSUMER")),
                  metadata=meta, timeout=5)
    received = set()
    deadline = time.time() + 30
    while received != sent and time.time() < deadline:
        request = s.ReceiveMessageRequest(
            group=group, message_queue=d.MessageQueue(topic=topic),
            filter_expression=d.FilterExpression(type=d.FilterType.Value("TAG"), expression="*"),
            batch_size=32)
        request.invisible_duration.FromSeconds(30)
        request.long_polling_timeout.FromSeconds(5)
        entries = []
        for frame in api.ReceiveMessage(request, metadata=meta, timeout=15):
            which = frame.WhichOneof("content")
            if which == "status" and frame.status.code not in (ok, d.Code.Value("MESSAGE_NOT_FOUND")):
                sys.exit(f"ReceiveMessage: {d.Code.Name(frame.status.code)} {frame.status.message}")
            if which == "message":
                sp = frame.message.system_properties
                print(f"received message_id={sp.message_id} attempt={sp.delivery_attempt} "
                      f"body={frame.message.body.decode(errors='replace')}")
                entries.append(s.AckMessageEntry(message_id=sp.message_id,
                                                 receipt_handle=sp.receipt_handle))
        if not entries:
            continue
        ack = api.AckMessage(s.AckMessageRequest(group=group, topic=topic, entries=entries),
                             metadata=meta, timeout=5)
        if ack.status.code != ok:
            sys.exit(f"AckMessage: {d.Code.Name(ack.status.code)} {ack.status.message}")
        received.update(e.message_id for e in entries)
    missing = sent - received
    if missing:
        sys.exit(f"not received: {sorted(missing)}")
    print(f"acked {len(received & sent)} of {len(sent)} sent messages")


if __name__ == "__main__":
    main()
