"""A broker restart is survived on every broker: jobs published before, during and after the
restart all come back with their result (nothing lost), the worker's consumer comes back and
the orchestrator keeps receiving results.

Each broker is a throwaway server (tests/servers.py) whose settings keep data across restarts:
JetStream file storage, Redis with ``appendonly yes`` + ``appendfsync always``, a RabbitMQ node
of its own with durable queues and persistent messages. The shared servers are never touched.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from pathlib import Path

import pytest

from orquestrador import AsyncOrquestrador, WorkerOptions
from orquestrador.brokers import create_broker
from orquestrador.errors import BrokerError
from tests.conftest import eventually
from tests.roundtrip import worker_and_orchestrator
from tests.servers import NatsServer, RabbitServer, RedisServer, TlsFiles

Server = NatsServer | RedisServer | RabbitServer


def devagar(payload: dict) -> dict:
    time.sleep(0.3)  # keeps several jobs in flight when the broker goes away
    return {"soma": payload["a"] + payload["b"]}


@pytest.fixture(
    params=[
        pytest.param(("nats", "restart"), id="nats-restart", marks=pytest.mark.nats),
        pytest.param(("tls", "restart"), id="nats-tls-restart", marks=pytest.mark.nats),
        pytest.param(("redis", "restart"), id="redis-restart", marks=pytest.mark.redis),
        pytest.param(("redis", "kill"), id="redis-sigkill", marks=pytest.mark.redis),
        pytest.param(("redis", "outage"), id="redis-long-outage", marks=pytest.mark.redis),
        pytest.param(("rediss", "restart"), id="redis-tls-restart", marks=pytest.mark.redis),
        pytest.param(("amqp", "restart"), id="rabbitmq-restart", marks=pytest.mark.rabbitmq),
        pytest.param(("amqps", "restart"), id="rabbitmq-tls-restart", marks=pytest.mark.rabbitmq),
        pytest.param(("amqp", "outage"), id="rabbitmq-long-outage", marks=pytest.mark.rabbitmq),
        pytest.param(("bullmq", "kill"), id="bullmq-sigkill", marks=pytest.mark.bullmq),
        pytest.param(("bullmq", "outage"), id="bullmq-long-outage", marks=pytest.mark.bullmq),
    ]
)
def outage(request: pytest.FixtureRequest, tmp_path: Path, tls_files: TlsFiles) -> tuple[Server, str, str]:
    """(a running throwaway server, its URL, how it goes away: a clean restart, SIGKILL + start,
    or a long outage).

    TLS variants check that the reconnect makes a new TLS handshake with the same CA."""
    scheme, how = request.param
    tls = tls_files if scheme in ("tls", "rediss", "amqps") else None
    with_ca = f"?tls_ca={tls_files.ca}" if tls else ""
    if scheme.startswith("amqp"):
        rabbit: RabbitServer = request.getfixturevalue("rabbit_server")
        return rabbit, (rabbit.tls_url + with_ca if tls else rabbit.url), how
    started = (NatsServer if scheme in ("nats", "tls") else RedisServer)(tmp_path / scheme, tls=tls)
    started.start()
    request.addfinalizer(started.stop)
    url = started.url.replace("redis://", "bullmq://", 1) if scheme == "bullmq" else started.url
    return started, url + with_ca, how


def interrupt(server: Server, how: str) -> None:
    if how == "kill":  # appendfsync always: every acknowledged write is on disk already
        server.kill()
        server.start()
    elif how == "outage":  # down for longer than the clients' retry windows (about 10 s)
        server.stop()
        time.sleep(15)
        server.start()
    else:
        server.restart()


async def publish_retrying(orq: AsyncOrquestrador, nome: str, n: int) -> str:
    """Publishing raises while the client reconnects; a caller that retries gets through."""
    for _ in range(120):
        try:
            return (await orq.iniciar("iniciar_coleta", nome, {"a": n, "b": 1})).message_id
        except BrokerError:
            await asyncio.sleep(0.5)
    raise AssertionError("could not publish after the restart")


async def test_jobs_in_flight_survive_a_broker_restart(outage: tuple[Server, str, str]):
    server, url, how = outage
    options = WorkerOptions(fetch_timeout=0.5, concurrency=4, visibility_timeout=10)
    async with worker_and_orchestrator(url, devagar, options) as (orq, nome):
        sent = {await publish_retrying(orq, nome, n): n for n in range(20)}
        first = next(iter(sent))
        assert (await orq.esperar(first, 60)).resultado == {"soma": 1}

        await asyncio.to_thread(interrupt, server, how)  # while most jobs wait or run
        back = time.monotonic()
        for n in range(20, 30):
            sent[await publish_retrying(orq, nome, n)] = n

        lost = []
        for message_id, n in sent.items():
            try:
                row = await orq.esperar(message_id, 120 if not lost else 1)
            except TimeoutError:
                row = None
            if row is None:
                lost.append(n)
            else:
                assert row.resultado == {"soma": n + 1}
        assert not lost, f"jobs lost in the {how}: {lost}"
        # Shown with -s, to compare recovery times (not asserted: the machine is shared).
        took = time.monotonic() - back
        print(f"\n{url.split(':')[0]} {how}: every result {took:.1f}s after the server was back")


@pytest.fixture(
    params=[
        pytest.param("nats", marks=pytest.mark.nats),
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("amqp", marks=pytest.mark.rabbitmq),
    ]
)
def restarted(request: pytest.FixtureRequest, tmp_path: Path) -> Server:
    """A running throwaway server of each broker, for a test that restarts it."""
    if request.param == "amqp":
        rabbit: RabbitServer = request.getfixturevalue("rabbit_server")
        return rabbit
    started = (NatsServer if request.param == "nats" else RedisServer)(tmp_path / request.param)
    started.start()
    request.addfinalizer(started.stop)
    return started


async def test_event_subscriptions_come_back_after_a_broker_restart(
    restarted: Server, caplog: pytest.LogCaptureFixture
) -> None:
    """The orchestrator's live view of running jobs rests on one events subscription: after a
    restart it must receive again, and the drop must show in the log (not die silently); a
    callback that fails is logged and does not end it either."""
    caplog.set_level(logging.WARNING, logger="orquestrador.brokers")
    broker = create_broker(restarted.url)
    await broker.connect()
    subject = f"orq.t{uuid.uuid4().hex[:8]}.job.started"
    got: list[bytes] = []

    async def callback(body: bytes) -> None:
        got.append(body)
        if body == b"before":
            raise ValueError("a bug in a listener")

    stop = await broker.subscribe_events(subject, callback)
    try:
        await broker.publish_event(subject, b"before")
        await eventually(lambda: any("callback" in r.getMessage() for r in caplog.records), timeout=10)
        caplog.clear()

        await asyncio.to_thread(restarted.stop)
        logged = lambda: any(r.name.startswith("orquestrador.brokers") for r in caplog.records)  # noqa: E731
        await eventually(logged, timeout=30)  # said while the server is down, not only once back
        await asyncio.to_thread(restarted.start)

        async def arrives() -> bool:  # events are best-effort: send until one gets through
            await broker.publish_event(subject, b"after")
            return b"after" in got

        await eventually(arrives, timeout=60, interval=0.5)
    finally:
        await stop()
        await broker.close()


async def test_topic_subscriptions_come_back_after_a_broker_restart(restarted: Server) -> None:
    """A live and a durable topic subscription both receive again after a restart, every
    message the durable one was sent once the server was back arrives, and a publish while the
    server is down is an error."""
    from orquestrador.topics import TopicMessage

    broker = create_broker(restarted.url)
    await broker.connect()
    prefix, name = f"t{uuid.uuid4().hex[:8]}", f"d{uuid.uuid4().hex[:8]}"
    live: list[str] = []
    durable: list[str] = []

    async def on_live(topic: str, body: bytes) -> None:
        live.append(TopicMessage.decode(body).dados)

    async def on_durable(topic: str, body: bytes) -> None:
        durable.append(TopicMessage.decode(body).dados)

    async def send(dados: str) -> None:
        await broker.publish_topic(f"{prefix}.x", TopicMessage(f"{prefix}.x", dados).encode())

    stops = [
        await broker.subscribe_topic(f"{prefix}.*", on_live),
        await broker.subscribe_topic(f"{prefix}.*", on_durable, durable=name),
    ]
    try:
        await send("before")
        await eventually(lambda: "before" in live and "before" in durable, timeout=10)

        await asyncio.to_thread(restarted.stop)
        with pytest.raises(BrokerError):  # said, not dropped silently
            await asyncio.wait_for(send("while down"), 60)
        await asyncio.to_thread(restarted.start)
        sent = 0

        async def arrives() -> bool:  # until the connection is back, a publish may fail
            nonlocal sent
            try:
                await send(f"after{sent}")
                sent += 1
            except BrokerError:
                pass
            return any(d.startswith("after") for d in live) and any(d.startswith("after") for d in durable)

        await eventually(arrives, timeout=60, interval=0.5)
        await eventually(lambda: len([d for d in durable if d.startswith("after")]) >= sent, timeout=30)
    finally:
        for stop in stops:
            await stop()
        await broker.delete_subscription(name)
        await broker.close()
