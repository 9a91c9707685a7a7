"""Topics on the brokers that fan out through a second service or a shared log (SQS via SNS,
Kafka's one ``orq.topicos`` topic): wildcard subscribers get exactly what their pattern matches,
a durable subscriber catches up once, live subscribers in two processes both receive, and bad
bodies or failing callbacks cost nothing else."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator

import pytest

from orquestrador.brokers import Broker, connect
from orquestrador.topics import TopicMessage
from tests.conftest import broker_url_for, eventually

BROKERS = [pytest.param(name, id=name, marks=getattr(pytest.mark, name)) for name in ("sqs", "kafka")]


@pytest.fixture(params=BROKERS)
def url(request: pytest.FixtureRequest) -> str:
    return broker_url_for(request.param, request)


@pytest.fixture
async def broker(url: str) -> AsyncIterator[Broker]:
    b = await connect(url)
    yield b
    await b.close()


def root() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


class Inbox:
    def __init__(self) -> None:
        self.got: list[tuple[str, dict]] = []  # type: ignore[type-arg]

    async def __call__(self, topic: str, body: bytes) -> None:
        message = TopicMessage.decode(body)
        assert message.topico == topic
        self.got.append((topic, message.dados))

    def topics(self) -> list[str]:
        return sorted(t for t, _ in self.got)


async def publish(broker: Broker, topic: str, dados: object = None) -> None:
    await broker.publish_topic(topic, TopicMessage(topic, dados).encode())


async def test_a_wildcard_subscriber_gets_exactly_the_matching_topics(broker: Broker) -> None:
    r = root()
    star, rest = Inbox(), Inbox()
    stop_star = await broker.subscribe_topic(f"{r}.orders.*", star)
    stop_rest = await broker.subscribe_topic(f"{r}.>", rest)
    topics = [f"{r}.orders.created", f"{r}.orders.created.eu", f"{r}.payments.created", f"{r}.orders",
              f"{r}x.orders.paid", f"{r}.orders.paid"]  # fmt: skip
    for topic in topics:
        await publish(broker, topic)
    await eventually(lambda: len(rest.got) == 5 and len(star.got) == 2, timeout=30)
    await asyncio.sleep(1.5)  # nothing else trickles in
    assert star.topics() == [f"{r}.orders.created", f"{r}.orders.paid"]
    assert rest.topics() == sorted(t for t in topics if t.startswith(f"{r}."))
    await stop_star()
    await stop_rest()


async def test_a_durable_subscriber_gets_what_was_published_while_it_was_stopped_once(url: str) -> None:
    r, durable = root(), f"d{uuid.uuid4().hex[:8]}"
    first = Inbox()
    async with await connect(url) as broker:
        stop = await broker.subscribe_topic(f"{r}.*", first, durable=durable)
        await publish(broker, f"{r}.before", 0)
        await eventually(lambda: first.got, timeout=30)
        await stop()
        for n in range(1, 6):
            await publish(broker, f"{r}.meanwhile", n)
        await publish(broker, f"{r}.not.matching", 99)
    again = Inbox()
    async with await connect(url) as broker:  # a new connection: as a restarted process
        stop = await broker.subscribe_topic(f"{r}.*", again, durable=durable)
        await eventually(lambda: len(again.got) >= 5, timeout=30)
        await asyncio.sleep(2)
        await stop()
        await _forget(broker, durable)
    assert first.got == [(f"{r}.before", 0)]
    assert sorted(d for _, d in again.got) == [1, 2, 3, 4, 5]  # each once, none of before


async def test_a_durable_callback_that_raises_gets_the_message_again(broker: Broker) -> None:
    r, durable, calls = root(), f"d{uuid.uuid4().hex[:8]}", []

    async def flaky(topic: str, body: bytes) -> None:
        calls.append(topic)
        if len(calls) == 1:
            raise RuntimeError("first time fails")

    stop = await broker.subscribe_topic(f"{r}.>", flaky, durable=durable)
    await publish(broker, f"{r}.x")
    await eventually(lambda: len(calls) >= 2, timeout=30)
    await asyncio.sleep(1.5)
    await stop()
    await _forget(broker, durable)
    assert calls == [f"{r}.x", f"{r}.x"]


async def test_malformed_bodies_are_skipped_and_the_subscription_goes_on(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    r, durable = root(), f"d{uuid.uuid4().hex[:8]}"
    live, kept = Inbox(), Inbox()
    stop_live = await broker.subscribe_topic(f"{r}.>", live)
    stop_kept = await broker.subscribe_topic(f"{r}.>", kept, durable=durable)
    with caplog.at_level(logging.WARNING, "orquestrador.topics"):
        await broker.publish_topic(f"{r}.bad", b"not json at all")
        await broker.publish_topic(f"{r}.bad", json.dumps({"topico": f"{r}.bad"}).encode())  # no ids
        await publish(broker, f"{r}.good", 1)
        await eventually(lambda: live.got and kept.got, timeout=30)
        await asyncio.sleep(1)
    await stop_live()
    await stop_kept()
    await _forget(broker, durable)
    assert live.got == kept.got == [(f"{r}.good", 1)]
    assert sum("malformed" in r.message for r in caplog.records) == 4  # two bodies, two subscriptions


SUBSCRIBER = """
import asyncio, sys
from orquestrador.brokers import connect

async def main(url, pattern, count):
    broker = await connect(url)
    got = []
    async def callback(topic, body):
        got.append(topic)
    await broker.subscribe_topic(pattern, callback)
    print("ready", flush=True)
    while len(got) < count:
        await asyncio.sleep(0.05)
    print(" ".join(got), flush=True)
    await broker.close()

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


async def test_live_subscribers_of_two_processes_both_receive(broker: Broker, url: str) -> None:
    r = root()
    procs = [subprocess.Popen([sys.executable, "-c", SUBSCRIBER, url, f"{r}.*", "2"], stdout=subprocess.PIPE,
                              text=True) for _ in range(2)]  # fmt: skip
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert await asyncio.to_thread(proc.stdout.readline) == "ready\n"
        await publish(broker, f"{r}.a")
        await publish(broker, f"{r}.b.c")  # not theirs
        await publish(broker, f"{r}.b")
        outs = [await asyncio.to_thread(proc.communicate, timeout=60) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    assert [sorted(out.split()) for out, _ in outs] == [[f"{r}.a", f"{r}.b"]] * 2


async def _forget(broker: Broker, durable: str) -> None:
    """Shared servers stay as found."""
    await broker.delete_subscription(durable)
