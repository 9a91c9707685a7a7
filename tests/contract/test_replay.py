"""Dead-letter replay moves what was in the DLQ when it started, each message exactly once."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from orquestrador.brokers import Broker
from orquestrador.brokers.base import Delivery
from orquestrador.brokers.support import lanes
from orquestrador.job_options import JobOptions
from orquestrador.operations import replay_by_id
from tests.conftest import eventually


async def _dead_letter(
    broker: Broker, queue: str, bodies: list[bytes], message_ids: list[str] | None = None
) -> None:
    """Publish ``bodies`` and dead-letter every one of them."""
    for i, body in enumerate(bodies):
        await broker.publish(queue, body, message_id=message_ids[i] if message_ids else None)
    consumer = await broker.consume(queue, visibility_timeout=60.0, prefetch=64)
    taken: list[Delivery] = []
    try:
        while len(taken) < len(bodies):
            batch = await consumer.fetch(len(bodies) - len(taken), timeout=5)
            assert len(batch) <= len(bodies) - len(taken), "a fetch returned more than asked for"
            for delivery in batch:
                await delivery.dead_letter("boom", error_type="ValueError")
            taken += batch
    finally:
        await consumer.close()
    await eventually(lambda: _dead_count(broker, queue, len(bodies)), timeout=20)


async def _dead_count(broker: Broker, queue: str, expected: int) -> bool:
    return (await broker.stats(queue)).dead_letters == expected


async def _depth(broker: Broker, queue: str, expected: int) -> bool:
    return (await broker.stats(queue)).depth == expected


async def _drain(broker: Broker, queue: str, expected: int) -> list[bytes]:
    """Take and ack ``expected`` messages from ``queue``; then check nothing else is there."""
    consumer = await broker.consume(queue, visibility_timeout=60.0, prefetch=64)
    got: list[bytes] = []
    try:
        while len(got) < expected:
            batch = await consumer.fetch(expected - len(got), timeout=5)
            assert batch, f"only {len(got)} of {expected} messages came back"
            await broker.ack_many(batch)
            got += [d.body for d in batch]
        assert await consumer.fetch(10, timeout=1.0) == []
    finally:
        await consumer.close()
    return got


async def test_replay_of_250_dead_letters_moves_exactly_250(broker: Broker, queue: str):
    bodies = [f"job-{i}".encode() for i in range(250)]
    await _dead_letter(broker, queue, bodies)

    assert await broker.replay(queue, limit=100) == 100
    assert (await broker.stats(queue)).dead_letters == 150
    assert await broker.replay(queue) == 150

    stats = await broker.stats(queue)
    assert (stats.depth, stats.dead_letters) == (250, 0)
    assert sorted(await _drain(broker, queue, 250)) == sorted(bodies)


async def test_replay_ends_while_a_worker_dead_letters_every_replayed_message(broker: Broker, queue: str):
    """Old behaviour: replay fetched until the DLQ looked empty, so it kept taking back the
    messages a still-failing worker dead-lettered again, and never ended (or over-counted)."""
    bodies = [f"poison-{i}".encode() for i in range(40)]
    await _dead_letter(broker, queue, bodies)
    stop = asyncio.Event()
    failed_again: list[bytes] = []

    async def failing_worker() -> None:
        consumer = await broker.consume(queue, visibility_timeout=60.0, prefetch=16)
        try:
            while not stop.is_set():
                for delivery in await consumer.fetch(16, timeout=0.2):
                    await delivery.dead_letter("still broken", error_type="ValueError")
                    failed_again.append(delivery.body)
        finally:
            await consumer.close()

    worker = asyncio.create_task(failing_worker())
    try:
        moved = await asyncio.wait_for(broker.replay(queue), timeout=120)
        assert moved == len(bodies)
        # Every replayed message reached the worker and is back in the DLQ once: none doubled.
        await eventually(lambda: len(failed_again) >= len(bodies), timeout=30)
    finally:
        stop.set()
        await worker
    assert sorted(failed_again) == sorted(bodies)
    assert (await broker.stats(queue)).dead_letters == len(bodies)
    # A second replay takes those, again exactly once each.
    assert await broker.replay(queue) == len(bodies)
    assert sorted(await _drain(broker, queue, len(bodies))) == sorted(bodies)


async def test_replay_by_id_moves_exactly_that_dead_letter(broker: Broker, queue: str):
    ids = [uuid.uuid4().hex for _ in range(5)]
    bodies = [json.dumps({"message_id": mid, "tipo_evento": "iniciar_coleta"}).encode() for mid in ids]
    # Published with their message_id by this same connection, as an orchestrator does: the
    # replay must not be mistaken for a duplicate publish and dropped.
    await _dead_letter(broker, queue, bodies, message_ids=ids)

    assert await replay_by_id(broker, queue, ids[3]) == 1

    # The four it looked at and left go back to the DLQ (a quorum queue counts them a moment later).
    await eventually(lambda: _dead_count(broker, queue, 4))
    assert await _drain(broker, queue, 1) == [bodies[3]]
    assert await replay_by_id(broker, queue, "no-such-id") == 0
    await eventually(lambda: _dead_count(broker, queue, 4))


@pytest.mark.parametrize("how", ["all", "by_id"])
async def test_a_replayed_urgent_job_goes_back_to_its_priority_lane(broker: Broker, how: str) -> None:
    """An urgent job that dead-lettered is still urgent when replayed (all, or by its id):
    brokers without native priority put it back in the lane it was taken from, not behind the
    queue's backlog; a broker with native priority (BullMQ) puts the job itself back, its
    priority with it."""
    queue = f"escavador_lane_{uuid.uuid4().hex[:10]}"
    lane = await broker.job_queue(queue, JobOptions(prioridade=7))
    assert (lane == queue) == broker.native_priority
    await broker.declare(queue)
    try:
        urgent = json.dumps({"message_id": uuid.uuid4().hex}).encode()
        await broker.publish(lane, urgent)
        consumer = await lanes.consume(broker, queue, visibility_timeout=60.0, prefetch=8)
        try:
            taken: list[Delivery] = []
            while not taken:
                taken = await consumer.fetch(1, timeout=5)
            assert taken[0].body == urgent
            await taken[0].dead_letter("boom", error_type="ValueError")
        finally:
            await consumer.close()
        await eventually(lambda: _dead_count(broker, queue, 1), timeout=20)

        await broker.publish(queue, b"backlog")
        if how == "all":
            assert await broker.replay(queue) == 1
        else:
            assert await replay_by_id(broker, queue, json.loads(urgent)["message_id"]) == 1

        if broker.native_priority:  # one queue: the job is back in it, beside the backlog
            await eventually(lambda: _depth(broker, queue, 2), timeout=20)
            assert (await broker.stats(queue)).dead_letters == 0
            assert sorted(await _drain(broker, queue, 2)) == sorted([urgent, b"backlog"])
            return

        await eventually(lambda: _depth(broker, lane, 1), timeout=20)
        assert (await broker.stats(queue)).depth == 1  # the backlog only
        assert await _drain(broker, lane, 1) == [urgent]
    finally:
        for name in (queue, *lanes.lanes_of(queue)):
            await broker.delete(name)
