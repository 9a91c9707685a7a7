"""The one delivery rule every adapter applies to topic messages, and the in-memory broker's topics.

(The same behaviour on the real brokers: tests/contract/test_topics.py.)
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import pytest

from orquestrador.brokers.memory import MemoryBroker
from orquestrador.errors import TopicError
from orquestrador.topics import TopicMessage, delivery
from orquestrador.topics.delivery import deliver_durable, deliver_live, validate_durable_name
from tests.conftest import eventually


class Calls:
    def __init__(self, failing: int = 0) -> None:
        self.topics: list[str] = []
        self.failing = failing

    async def __call__(self, topic: str, body: bytes) -> None:
        self.topics.append(topic)
        if len(self.topics) <= self.failing:
            raise RuntimeError("boom")


def body(topic: str, dados: Any = None) -> bytes:
    return TopicMessage(topic, dados).encode()


async def test_live_delivery_passes_only_decodable_matching_messages(caplog: pytest.LogCaptureFixture):
    calls = Calls()
    await deliver_live("a.*", body("a.b"), calls)
    await deliver_live("a.*", body("a.b.c"), calls)  # a broker wildcard's surplus: silently left
    await deliver_live("a.*", b"junk", calls)
    assert calls.topics == ["a.b"]
    assert caplog.text.count("malformed") == 1


async def test_a_failing_live_callback_is_logged_not_raised(caplog: pytest.LogCaptureFixture):
    await deliver_live("a.*", body("a.b"), Calls(failing=1))
    assert "topic callback for a.* failed on a.b" in caplog.text


async def test_a_durable_delivery_retries_with_backoff_then_returns(monkeypatch: pytest.MonkeyPatch):
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(delivery.asyncio, "sleep", sleep)
    kept_alive = 0

    async def keep_alive() -> None:
        nonlocal kept_alive
        kept_alive += 1

    calls = Calls(failing=2)
    await deliver_durable("a.*", body("a.b"), calls, "d", keep_alive=keep_alive)
    assert (len(calls.topics), slept, kept_alive) == (3, [1.0, 2.0], 2)


async def test_a_durable_delivery_gives_up_after_the_last_attempt(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    async def sleep(_seconds: float) -> None:
        return None

    monkeypatch.setattr(delivery.asyncio, "sleep", sleep)
    calls = Calls(failing=100)
    with caplog.at_level(logging.WARNING):
        await deliver_durable("a.*", body("a.b"), calls, "d")
    assert len(calls.topics) == delivery.MAX_ATTEMPTS
    assert "dropped a message on a.b" in caplog.text


async def test_a_malformed_durable_message_returns_at_once_to_be_acked():
    calls = Calls()
    await asyncio.wait_for(deliver_durable("a.*", b"\x00", calls, "d"), 1)
    assert calls.topics == []


@pytest.mark.parametrize("bad", ["", "a.b", "a b", "x" * 101, None, "é"])
def test_durable_names_become_broker_names_so_they_are_plain(bad: object):
    with pytest.raises(TopicError, match="durable"):
        validate_durable_name(bad)


def test_backoff_doubles_and_is_bounded():
    assert [delivery.backoff(n) for n in (1, 2, 3, 4, 10)] == [1.0, 2.0, 4.0, 8.0, 30.0]


@pytest.fixture
async def memory() -> MemoryBroker:
    broker = MemoryBroker(f"memory://{uuid.uuid4().hex}")
    await broker.connect()
    return broker


async def test_memory_topics_follow_the_token_rule_and_stay_apart_from_events(memory: MemoryBroker):
    star, rest, everything = Calls(), Calls(), Calls()
    await memory.subscribe_topic("a.*", star)
    await memory.subscribe_topic("a.>", rest)
    await memory.subscribe_topic(">", everything)
    await memory.publish_event("orq.eventos", b'{"tipo": "x"}')
    for topic in ["a", "a.b", "a.b.c", "b.a"]:
        await memory.publish_topic(topic, body(topic))

    await eventually(lambda: len(everything.topics) == 4)
    assert (star.topics, rest.topics) == (["a.b"], ["a.b", "a.b.c"])


async def test_memory_events_take_patterns_too(memory: MemoryBroker):
    got: list[bytes] = []

    async def on(data: bytes) -> None:
        got.append(data)

    stop = await memory.subscribe_events("orq.*", on)
    await memory.publish_event("orq.eventos", b"1")
    await memory.publish_event("orq.eventos.x", b"2")
    await eventually(lambda: got == [b"1"])
    await stop()
    await memory.publish_event("orq.eventos", b"3")
    await asyncio.sleep(0.05)
    assert got == [b"1"]


async def test_memory_topics_are_live_only(memory: MemoryBroker):
    assert not memory.capabilities.durable_topics
    with pytest.raises(TopicError, match="live topic subscriptions only"):
        await memory.subscribe_topic("a.*", Calls(), durable="d")
    with pytest.raises(TopicError):
        await memory.delete_subscription("d")


async def test_memory_unsubscribe_stops_delivery(memory: MemoryBroker):
    calls = Calls()
    stop = await memory.subscribe_topic("a.*", calls)
    await memory.publish_topic("a.b", body("a.b"))
    await eventually(lambda: calls.topics == ["a.b"])
    await stop()
    await memory.publish_topic("a.c", body("a.c"))
    await asyncio.sleep(0.05)
    assert calls.topics == ["a.b"]


async def test_stopping_a_durable_subscription_waits_for_the_delivery_in_progress():
    """Cut between the callback and its ack, a message done already would go to the next
    subscriber of the name: unsubscribe lets the delivery finish, then stops before the next."""
    gate = delivery.Gate()
    started, release = asyncio.Event(), asyncio.Event()
    acked: list[int] = []

    async def pump() -> None:
        for n in range(3):
            if gate.stopping:
                return
            async with gate.delivery():
                started.set()
                await release.wait()  # the callback at work
                acked.append(n)

    task = delivery.watched(pump(), "d")
    await started.wait()
    stopping = asyncio.ensure_future(delivery.stop(task, gate))
    await asyncio.sleep(0.05)
    assert not stopping.done()  # waits for message 0
    release.set()
    await asyncio.wait_for(stopping, 1)
    assert acked == [0] and task.done()
