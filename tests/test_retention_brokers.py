"""Dead-letter queues stay bounded on every real broker: ORQ_DLQ_MAX_MESSAGES and ORQ_DLQ_MAX_AGE."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from orquestrador.brokers import Broker, connect
from orquestrador.brokers.base import dlq_of
from tests.conftest import BROKERS, broker_url_for, eventually

REAL = [p for p in BROKERS if p.values[0] != "memory"]


# SQS has no count cap for a queue (ORQ_DLQ_MAX_MESSAGES is ignored there, with a warning) and
# keeps messages at least 60 s (MessageRetentionPeriod); moto, the tests' SQS, never expires them.
NO_COUNT_CAP = ("sqs",)
# What SQS does with the age cap is set on the queue when it is created (tests/brokers/test_sqs.py).
REAL_WITH_AGE = [p for p in REAL if p.values[0] not in NO_COUNT_CAP]


@pytest.fixture(params=REAL)
def real_url(request: pytest.FixtureRequest) -> str:
    return broker_url_for(request.param, request)


@pytest.fixture(params=REAL_WITH_AGE)
def aging_url(request: pytest.FixtureRequest) -> str:
    return broker_url_for(request.param, request)


def uncapped(url: str) -> bool:
    return url.startswith(tuple(f"{name}://" for name in NO_COUNT_CAP))


@pytest.fixture
def queue_name() -> str:
    return f"t_ret_{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def cleanup(real_url: str, queue_name: str) -> AsyncIterator[None]:
    yield
    broker = await connect(real_url)
    try:
        await broker.delete(queue_name)
    finally:
        await broker.close()


async def _dead_letter(broker: Broker, queue: str, bodies: list[bytes]) -> None:
    """Publish ``bodies`` and dead-letter each, one at a time, in order."""
    for body in bodies:
        await broker.publish(queue, body, message_id=uuid.uuid4().hex)
    consumer = await broker.consume(queue, visibility_timeout=30.0, prefetch=1)
    try:
        done = 0
        while done < len(bodies):
            for delivery in await consumer.fetch(1, timeout=2.0):
                assert delivery.body == bodies[done]
                await delivery.dead_letter("test: poison", error_type="ValueError")
                done += 1
    finally:
        await consumer.close()


async def _dead_bodies(broker: Broker, queue: str) -> list[bytes]:
    return [m.body for m in await broker.peek(dlq_of(queue), limit=50)]


async def test_dlq_with_a_max_messages_cap_keeps_only_the_newest(real_url, queue_name, cleanup, monkeypatch):
    monkeypatch.setenv("ORQ_DLQ_MAX_MESSAGES", "3")
    broker = await connect(real_url)
    try:
        await broker.declare(queue_name)
        bodies = [f"job-{i}".encode() for i in range(7)]
        await _dead_letter(broker, queue_name, bodies)
        if uncapped(real_url):  # documented: no count cap on SQS, every dead letter is kept
            assert sorted(await _dead_bodies(broker, queue_name)) == bodies
            return
        assert await _dead_bodies(broker, queue_name) == bodies[-3:]  # the oldest were dropped
        await _dead_letter(broker, queue_name, [b"job-7"])
        assert await _dead_bodies(broker, queue_name) == [*bodies[-2:], b"job-7"]
    finally:
        await broker.close()


async def test_dlq_without_caps_keeps_every_dead_letter(real_url, queue_name, cleanup, monkeypatch):
    monkeypatch.delenv("ORQ_DLQ_MAX_MESSAGES", raising=False)
    monkeypatch.delenv("ORQ_DLQ_MAX_AGE", raising=False)
    broker = await connect(real_url)
    try:
        await broker.declare(queue_name)
        bodies = [f"job-{i}".encode() for i in range(5)]
        await _dead_letter(broker, queue_name, bodies)
        assert await _dead_bodies(broker, queue_name) == bodies
    finally:
        await broker.close()


async def test_dlq_with_a_max_age_drops_old_dead_letters(aging_url, queue_name, monkeypatch):
    real_url = aging_url
    redis = real_url.startswith(("redis", "bullmq"))
    # Redis (and BullMQ, for its failed jobs) trims by age when the next dead letter is written:
    # give the new one time to be seen.
    monkeypatch.setenv("ORQ_DLQ_MAX_AGE", "3s" if redis else "1s")
    broker = await connect(real_url)
    try:
        await broker.declare(queue_name)
        await _dead_letter(broker, queue_name, [b"old-1", b"old-2"])
        if redis:
            await asyncio.sleep(3.5)
            await _dead_letter(broker, queue_name, [b"new"])
            assert await _dead_bodies(broker, queue_name) == [b"new"]
        else:  # the server expires them by itself
            await eventually(lambda: _empty(broker, queue_name), timeout=30)
    finally:
        await broker.delete(queue_name)
        await broker.close()


async def _empty(broker: Broker, queue: str) -> bool:
    return await _dead_bodies(broker, queue) == []


async def test_existing_dlq_gets_the_caps_on_nats_and_keeps_working_elsewhere(
    real_url, queue_name, cleanup, monkeypatch
):
    """A DLQ declared before the caps: NATS updates its stream; RabbitMQ keeps the old queue
    arguments (it refuses to change them) and the queue still takes dead letters."""
    monkeypatch.delenv("ORQ_DLQ_MAX_MESSAGES", raising=False)
    old = await connect(real_url)
    try:
        await old.declare(queue_name)
        await _dead_letter(old, queue_name, [f"a-{i}".encode() for i in range(4)])
    finally:
        await old.close()
    monkeypatch.setenv("ORQ_DLQ_MAX_MESSAGES", "2")
    new = await connect(real_url)
    try:
        await new.declare(queue_name)
        await _dead_letter(new, queue_name, [b"b-0"])
        dead = await _dead_bodies(new, queue_name)
        if real_url.startswith("nats"):
            assert dead == [b"a-3", b"b-0"]
        elif real_url.startswith("amqp"):
            assert dead == [b"a-0", b"a-1", b"a-2", b"a-3", b"b-0"]  # documented: old arguments stay
        elif uncapped(real_url):  # no count cap on SQS: it keeps taking dead letters, every one
            assert sorted(dead) == [b"a-0", b"a-1", b"a-2", b"a-3", b"b-0"]
        else:  # Redis (BullMQ too) caps on every dead-letter write, old stream or not
            assert dead == [b"a-3", b"b-0"]
    finally:
        await new.close()
