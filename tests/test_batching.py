"""Group commit in the worker: jobs finishing together share one broker call, each learns its outcome."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from orquestrador.brokers import connect
from orquestrador.errors import BrokerError
from orquestrador.worker.batching import Acker, Publisher


async def test_results_published_together_arrive_once_each_on_their_own_queues():
    broker = await connect(f"memory://{uuid.uuid4().hex}")
    calls: list[str] = []
    real = broker.publish_many

    async def spy(queue, items, **kw):  # type: ignore[no-untyped-def]
        items = list(items)
        calls.append(f"{queue}:{len(items)}")
        return await real(queue, items, **kw)

    broker.publish_many = spy  # type: ignore[method-assign]
    publisher = Publisher(broker)
    sends = [publisher.publish("a" if i % 3 else "b", f"r{i}".encode(), f"id{i}") for i in range(9)]
    await asyncio.gather(*sends)

    assert sorted(calls) == ["a:6", "b:3"]  # one call per queue for the whole turn
    assert sorted(m.body for m in await broker.peek("a", limit=20)) == sorted(
        f"r{i}".encode() for i in range(9) if i % 3
    )
    assert len(await broker.peek("b", limit=20)) == 3
    await broker.close()


async def test_a_failed_batch_fails_every_job_in_it_and_the_next_batch_still_goes():
    broker = await connect(f"memory://{uuid.uuid4().hex}")
    publisher = Publisher(broker)
    real = broker.publish_many

    async def down(queue, items, **kw):  # type: ignore[no-untyped-def]
        raise BrokerError("connection lost")

    broker.publish_many = down  # type: ignore[method-assign]
    outcomes = await asyncio.gather(
        *(publisher.publish("q", b"x", f"m{i}") for i in range(4)), return_exceptions=True
    )
    assert all(isinstance(o, BrokerError) for o in outcomes)

    broker.publish_many = real  # type: ignore[method-assign]
    await asyncio.gather(*(publisher.publish("q", b"y", f"n{i}") for i in range(4)))
    assert len(await broker.peek("q", limit=10)) == 4
    await broker.close()


async def test_acks_of_jobs_finishing_together_settle_in_one_call():
    broker = await connect(f"memory://{uuid.uuid4().hex}")
    for i in range(5):
        await broker.publish("q", f"j{i}".encode())
    consumer = await broker.consume("q", visibility_timeout=0.5)
    deliveries = await consumer.fetch(5, timeout=1)
    sizes: list[int] = []
    real = broker.ack_many

    async def spy(batch):  # type: ignore[no-untyped-def]
        sizes.append(len(batch))
        return await real(batch)

    broker.ack_many = spy  # type: ignore[method-assign]
    acker = Acker(broker)
    await asyncio.gather(*(acker.ack(d) for d in deliveries))

    assert sizes == [5]
    await asyncio.sleep(0.8)  # past the visibility timeout: nothing comes back
    assert await consumer.fetch(5, timeout=0.3) == []
    await consumer.close()
    await broker.close()


async def test_an_ack_batch_with_failures_reports_them_to_its_jobs():
    broker = await connect(f"memory://{uuid.uuid4().hex}")
    await broker.publish("q", b"a")
    await broker.publish("q", b"b")
    consumer = await broker.consume("q")
    deliveries = await consumer.fetch(2, timeout=1)

    async def half(batch):  # type: ignore[no-untyped-def]
        return 1

    broker.ack_many = half  # type: ignore[method-assign]
    acker = Acker(broker)
    with pytest.raises(BrokerError, match="1 of 2 acks failed"):
        await asyncio.gather(*(acker.ack(d) for d in deliveries))
    await consumer.close()
    await broker.close()
