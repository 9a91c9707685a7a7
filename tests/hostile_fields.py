"""Messages whose body is a valid job but whose broker-level fields are hostile, put on a queue by
hand with each broker's plain client (as an attacker or a careless script would).

``inject(broker_name, url, queue, correlation_id)`` publishes one of each kind for that broker
and returns how many: a worker must dead-letter every one of them with a reason and carry on.
The body of each is a valid ``iniciar_coleta`` envelope whose ``correlation_id`` is the one given,
so a test can tell them from good jobs in the dead-letter queue.
"""

from __future__ import annotations

import asyncio
import json
import struct
import sys
import uuid

from orquestrador.envelope import new_id


def body(correlation_id: str, *, valid: bool = True) -> bytes:
    if not valid:
        return b"not a job at all"
    return json.dumps({
        "correlation_id": correlation_id, "tipo_evento": "iniciar_coleta", "payload": {"hostil": True},
        "timestamp": "2025-10-14T12:00:00Z", "message_id": new_id(),
    }).encode()  # fmt: skip


async def inject_redis(url: str, queue: str, correlation_id: str) -> int:
    import redis.asyncio as aioredis

    from orquestrador.brokers.redis import stream_key

    entries = [
        {"b": body(correlation_id), "h": "[" * 100_000 + "]" * 100_000},  # RecursionError in json
        {"b": body(correlation_id), "id": b"\xff\xfe\xfd"},  # not UTF-8
        {"b": body(correlation_id), "a": b"9" * 5000},  # int() refuses it (digit limit)
        {"b": body(correlation_id), "h": b"[1, 2]"},  # JSON, not an object
        {"b": body(correlation_id), "h": json.dumps({"k": "v" * 20_000})},  # one header too large
        {"b": body(correlation_id), "a": b"-3"},  # not a count
    ]
    client = aioredis.Redis.from_url(url)
    try:
        for fields in entries:
            await client.xadd(stream_key(queue), fields)
    finally:
        await client.aclose()
    return len(entries)


async def inject_nats(url: str, queue: str, correlation_id: str) -> int:
    import nats

    nc = await nats.connect(url)
    # Headers and body just under the server's limit: a dead letter carrying these headers (plus
    # its reason) would be refused as too large, so it could never leave the queue.
    filler = b"x" * (nc.max_payload - 60_000 - 200)
    cases = [
        ({"X-Grande": "v" * 60_000}, filler),
        ({"X-Grande": "v" * 20_000}, body(correlation_id)),
        ({"Nats-Msg-Id": "m" * 300}, body(correlation_id)),  # not an id
        ({f"X-{i}": "v" for i in range(100)}, body(correlation_id)),  # too many
    ]
    try:
        js = nc.jetstream()
        for headers, data in cases:
            await js.publish(queue, data, headers=headers)
    finally:
        await nc.close()
    return len(cases)


def _nested(depth: int) -> dict[str, object]:
    table: dict[str, object] = {}
    for _ in range(depth):
        table = {"n": table}
    return table


class _RawHeaders:
    """Properties whose header table is written byte by byte: values pika itself refuses to
    encode but any AMQP client can send (a timestamp past the year 9999)."""

    def __init__(self, kind: bytes, value: bytes) -> None:
        self.kind, self.value = kind, value

    def properties(self) -> object:
        import pika
        from pika import spec

        table = b"\x01h" + self.kind + self.value
        raw = struct.pack(">H", spec.BasicProperties.FLAG_HEADERS | spec.BasicProperties.FLAG_DELIVERY_MODE)
        raw += struct.pack(">I", len(table)) + table + b"\x02"

        class Raw(pika.BasicProperties):  # type: ignore[misc]
            def encode(self) -> list[bytes]:
                return [raw]

        return Raw()


def _publish_rabbitmq(url: str, queue: str, correlation_id: str) -> int:
    import pika

    cases = [
        _RawHeaders(b"T", struct.pack(">Q", 2**63)).properties(),  # no such datetime
        pika.BasicProperties(headers={"fundo": _nested(1500)}),  # past the recursion limit
        pika.BasicProperties(message_id=b"\xff\xfe\xfd"),  # not UTF-8
        pika.BasicProperties(headers={"x-orq-attempts": "muitas"}),
        pika.BasicProperties(headers={"grande": "v" * 20_000}),
    ]
    connection = pika.BlockingConnection(pika.URLParameters(url))
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(20_000)  # a publisher in another language has no such limit
    try:
        channel = connection.channel()
        for props in cases:
            channel.basic_publish("", queue, body(correlation_id), props)
    finally:
        sys.setrecursionlimit(limit)
        connection.close()
    return len(cases)


async def inject_rabbitmq(url: str, queue: str, correlation_id: str) -> int:
    return await asyncio.to_thread(_publish_rabbitmq, url, queue, correlation_id)


async def inject_kafka(url: str, queue: str, correlation_id: str) -> int:
    from aiokafka import AIOKafkaProducer

    cases: list[list[tuple[str, bytes]]] = [
        [("x-orq-message-id", b"\xff\xfe\xfd")],  # not UTF-8
        [("x-orq-attempts", b"muitas")],  # not a count
        [("grande", b"v" * 20_000)],  # one header too large
        [(f"h{i}", b"v") for i in range(100)],  # too many
        [("nome\x00estranho", b"v")],  # a header name that is not printable text
    ]
    producer = AIOKafkaProducer(bootstrap_servers=url.removeprefix("kafka://"), acks="all")
    await producer.start()
    try:
        for headers in cases:
            await producer.send_and_wait(
                queue, body(correlation_id), key=correlation_id.encode(), headers=headers
            )
    finally:
        await producer.stop()
    return len(cases)


def _publish_sqs(url: str, queue: str, correlation_id: str) -> int:
    from urllib.parse import parse_qsl, urlsplit

    import boto3

    from orquestrador.brokers.sqs import sqs_name

    parts = urlsplit(url)
    endpoint = dict(parse_qsl(parts.query)).get("endpoint_url")
    client = boto3.client("sqs", region_name=parts.hostname or None, endpoint_url=endpoint)
    target = client.get_queue_url(QueueName=sqs_name(queue))["QueueUrl"]

    def text(value: str) -> dict[str, str]:
        return {"DataType": "String", "StringValue": value}

    cases: list[tuple[str, dict[str, dict[str, str]]]] = [
        (body(correlation_id).decode(), {"orq-headers": text("[" * 100_000 + "]" * 100_000)}),  # recursion
        (body(correlation_id).decode(), {"orq-headers": text("[1, 2]")}),  # JSON, not an object
        (body(correlation_id).decode(), {"orq-headers": text(json.dumps({"k": "v" * 20_000}))}),  # too large
        (body(correlation_id).decode(), {"orq-message-id": text("m" * 300)}),  # not an id
        ("not base64 at all!", {"orq-body-encoding": text("base64")}),  # says base64, is not
    ]
    for message, attributes in cases:
        client.send_message(QueueUrl=target, MessageBody=message, MessageAttributes=attributes)
    return len(cases)


async def inject_sqs(url: str, queue: str, correlation_id: str) -> int:
    return await asyncio.to_thread(_publish_sqs, url, queue, correlation_id)


async def inject_bullmq(url: str, queue: str, correlation_id: str) -> int:
    """Jobs added with the Python bullmq package itself, as another producer would, whose options
    carry hostile headers and whose id is not printable."""
    from bullmq import Queue

    data = json.loads(body(correlation_id))
    cases = [
        {"orq_headers": [1, 2]},  # not an object
        {"orq_headers": {"grande": "v" * 20_000}},  # one header too large
        {"orq_headers": {f"x-{i}": "v" for i in range(100)}},  # too many
        {"jobId": "hostil\x01\x02"},  # control characters in the id
    ]
    bull = Queue(queue, {"connection": url.replace("bullmq://", "redis://", 1)})
    try:
        for opts in cases:
            await bull.add("iniciar_coleta", data, opts)
    finally:
        await bull.close()
    return len(cases)


async def inject(broker_name: str, url: str, queue: str, correlation_id: str | None = None) -> int:
    correlation_id = correlation_id or f"hostil-{uuid.uuid4().hex[:8]}"
    injectors = {
        "redis": inject_redis, "nats": inject_nats, "rabbitmq": inject_rabbitmq, "bullmq": inject_bullmq,
        "sqs": inject_sqs, "kafka": inject_kafka,
    }  # fmt: skip
    return await injectors[broker_name](url, queue, correlation_id)
