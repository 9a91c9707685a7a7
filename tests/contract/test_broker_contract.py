"""The delivery contract of DESIGN.md at the broker level, written once for every adapter."""

from __future__ import annotations

import asyncio
import time

import pytest

from orquestrador.brokers import Broker
from orquestrador.brokers.base import DLQ_ATTEMPTS, DLQ_ERROR_TYPE, DLQ_REASON, dlq_of
from tests.conftest import eventually


async def test_publish_is_visible_to_inspection_before_anyone_consumes(broker: Broker, queue: str):
    await broker.publish(queue, b"one", headers={"traceparent": "00-abc-def-01"})
    await broker.publish(queue, b"two")

    stats = await broker.stats(queue)
    peeked = await broker.peek(queue, limit=10)

    assert (stats.depth, stats.in_flight, stats.dead_letters) == (2, 0, 0)
    assert [m.body for m in peeked] == [b"one", b"two"]
    assert peeked[0].headers.get("traceparent") == "00-abc-def-01"
    assert (await broker.stats(queue)).depth == 2, "peek must not consume"


async def test_ack_removes_the_message_for_good(broker: Broker, queue: str):
    await broker.publish(queue, b"job")
    consumer = await broker.consume(queue, visibility_timeout=1.0)
    [delivery] = await consumer.fetch(10, timeout=2)
    assert (delivery.body, delivery.attempt) == (b"job", 1)
    assert (await broker.stats(queue)).in_flight == 1

    await delivery.ack()

    assert await consumer.fetch(10, timeout=1.5) == []
    stats = await broker.stats(queue)
    assert (stats.depth, stats.in_flight) == (0, 0)
    await consumer.close()


async def test_ack_many_settles_a_whole_batch_and_leaves_the_rest(broker: Broker, queue: str):
    for i in range(6):
        await broker.publish(queue, f"job{i}".encode())
    consumer = await broker.consume(queue, visibility_timeout=1.0)
    batch = await eventually(lambda: consumer.fetch(6, timeout=1), timeout=10)
    while len(batch) < 6:
        batch += await consumer.fetch(6 - len(batch), timeout=1)
    acked, kept = batch[:4], batch[4:]

    assert await broker.ack_many(acked) == 0

    # The two not acked come back after the visibility timeout; the four acked never do.
    back = await eventually(lambda: consumer.fetch(10, timeout=0.5), timeout=15)
    while len(back) < 2:
        back += await consumer.fetch(10, timeout=0.5)
    assert sorted(d.body for d in back) == sorted(d.body for d in kept)
    assert await broker.ack_many(back) == 0
    assert await consumer.fetch(10, timeout=1.5) == []
    stats = await broker.stats(queue)
    assert (stats.depth, stats.in_flight) == (0, 0)
    await consumer.close()


async def test_fetch_on_an_empty_queue_is_an_empty_batch(broker: Broker, queue: str):
    consumer = await broker.consume(queue)
    started = time.monotonic()
    assert await consumer.fetch(5, timeout=0.3) == []
    assert time.monotonic() - started < 5
    await consumer.close()


async def test_a_message_reaching_a_waiting_fetch_is_returned_at_once(broker: Broker, queue: str):
    """A lone job must not wait for the rest of a batch, nor for the fetch's timeout."""
    consumer = await broker.consume(queue, prefetch=32)
    await consumer.fetch(32, timeout=0.1)  # subscribed and idle, as a worker between jobs
    for i in range(8):

        async def later(i: int = i) -> None:
            await asyncio.sleep(0.02 * (i % 4 + 1))  # after the fetch is waiting
            await broker.publish(queue, f"m{i}".encode())

        publishing = asyncio.create_task(later())
        started = time.monotonic()
        got = await consumer.fetch(32, timeout=3.0)
        waited = time.monotonic() - started
        await publishing
        assert [d.body for d in got] == [f"m{i}".encode()]
        assert waited < 1.5, f"fetch {i} returned {waited:.2f}s after it started, for one message"
        for delivery in got:
            await delivery.ack()
    await consumer.close()


async def test_unacked_message_returns_after_visibility_timeout(broker: Broker, queue: str):
    await broker.publish(queue, b"job")
    first = await broker.consume(queue, visibility_timeout=1.0)
    [delivery] = await first.fetch(1, timeout=2)
    assert delivery.attempt == 1

    second = await broker.consume(queue, visibility_timeout=1.0)
    redelivered = await eventually(lambda: second.fetch(1, timeout=0.5), timeout=15)

    assert redelivered[0].body == b"job"
    assert redelivered[0].attempt == 2, "the attempt is the broker's delivery count"
    await redelivered[0].ack()
    await first.close()
    await second.close()


async def test_heartbeat_keeps_a_long_job_from_being_redelivered(broker: Broker, queue: str):
    await broker.publish(queue, b"long job")
    worker = await broker.consume(queue, visibility_timeout=1.0)
    [delivery] = await worker.fetch(1, timeout=2)
    other = await broker.consume(queue, visibility_timeout=1.0)

    stolen = []
    for _ in range(8):  # 3+ visibility timeouts
        await delivery.heartbeat()
        stolen += await other.fetch(1, timeout=0.4)
    assert stolen == []

    await delivery.ack()
    await worker.close()
    await other.close()


async def test_nack_redelivers_with_the_next_attempt(broker: Broker, queue: str):
    await broker.publish(queue, b"flaky")
    consumer = await broker.consume(queue, visibility_timeout=5.0)
    [first] = await consumer.fetch(1, timeout=2)
    await first.nack()

    [second] = await eventually(lambda: consumer.fetch(1, timeout=0.5), timeout=10)
    assert (second.body, second.attempt) == (b"flaky", 2)
    await second.ack()
    await consumer.close()


async def test_nack_with_delay_holds_the_message_back(broker: Broker, queue: str):
    await broker.publish(queue, b"later")
    consumer = await broker.consume(queue, visibility_timeout=10.0)
    [first] = await consumer.fetch(1, timeout=2)
    started = time.monotonic()
    await first.nack(delay=1.5)

    assert await consumer.fetch(1, timeout=0.5) == []
    [again] = await eventually(lambda: consumer.fetch(1, timeout=0.5), timeout=10)
    assert time.monotonic() - started >= 1.4
    assert again.attempt == 2
    await again.ack()
    await consumer.close()


async def test_dead_letter_keeps_body_and_reason_and_can_be_replayed(broker: Broker, queue: str):
    await broker.publish(queue, b'{"not": "an envelope"}')
    consumer = await broker.consume(queue, visibility_timeout=5.0)
    [delivery] = await consumer.fetch(1, timeout=2)

    await delivery.dead_letter("not a valid envelope: tipo_evento missing", error_type="EnvelopeError")

    stats = await broker.stats(queue)
    assert (stats.depth, stats.in_flight, stats.dead_letters) == (0, 0, 1)
    [dead] = await broker.peek(dlq_of(queue))
    assert dead.body == b'{"not": "an envelope"}'
    assert dead.headers[DLQ_REASON] == "not a valid envelope: tipo_evento missing"
    assert dead.headers[DLQ_ERROR_TYPE] == "EnvelopeError"
    assert dead.headers[DLQ_ATTEMPTS] == "1"

    assert await broker.replay(queue) == 1

    assert (await broker.stats(queue)).dead_letters == 0
    [back] = await eventually(lambda: consumer.fetch(1, timeout=0.5), timeout=10)
    assert back.body == b'{"not": "an envelope"}'
    assert DLQ_REASON not in back.headers
    await back.ack()
    await consumer.close()


async def test_purge_drops_waiting_messages(broker: Broker, queue: str):
    for i in range(5):
        await broker.publish(queue, f"m{i}".encode())
    assert await broker.purge(queue) == 5
    assert (await broker.stats(queue)).depth == 0
    assert await broker.peek(queue) == []


async def test_competing_consumers_share_the_work_without_duplicates(broker: Broker, queue: str):
    n = 40
    await broker.publish_many(queue, ((f"m{i}".encode(), None) for i in range(n)))
    consumers = [await broker.consume(queue, visibility_timeout=10.0) for _ in range(2)]
    seen: list[bytes] = []

    async def drain(consumer):  # type: ignore[no-untyped-def]
        while True:
            batch = await consumer.fetch(5, timeout=0.5)
            if not batch:
                return
            for delivery in batch:
                seen.append(delivery.body)
                await delivery.ack()

    await asyncio.gather(*(drain(c) for c in consumers))
    assert sorted(seen) == sorted(f"m{i}".encode() for i in range(n))
    for consumer in consumers:
        await consumer.close()


async def test_declared_queues_are_listed(broker: Broker, queue: str):
    names = await broker.queues()
    assert queue in names
    assert dlq_of(queue) in names


@pytest.mark.parametrize("bad", ["", "has space", "a/b", "x" * 300, "q.other", "a__dlq"])
async def test_invalid_queue_names_are_refused_with_a_clear_error(broker: Broker, bad: str):
    from orquestrador.errors import ConfigError

    with pytest.raises(ConfigError, match="invalid queue name"):
        await broker.publish(bad, b"x")
