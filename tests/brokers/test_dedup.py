"""The per-connection dedup window RabbitMQ's adapter uses: never drops a message it failed to send."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from orquestrador.brokers.support.dedup import RecentIds
from orquestrador.errors import BrokerError


async def test_a_failed_publish_is_not_remembered_so_a_retry_goes_out():
    recent, sent = RecentIds(), []

    async def failing() -> None:
        raise BrokerError("connection lost")

    async def publish() -> None:
        sent.append(1)

    with pytest.raises(BrokerError):
        await recent.once("q", "m", failing)
    assert await recent.once("q", "m", publish) is True
    assert await recent.once("q", "m", publish) is False
    assert await recent.once("other", "m", publish) is True
    assert sent == [1, 1]


async def test_concurrent_publishes_of_one_id_wait_for_the_one_in_flight():
    recent, sent = RecentIds(), []
    gate = asyncio.Event()

    async def slow() -> None:
        await gate.wait()
        sent.append(1)

    racing = [asyncio.ensure_future(recent.once("q", "m", slow)) for _ in range(5)]
    await asyncio.sleep(0.01)
    gate.set()
    assert sorted(await asyncio.gather(*racing)) == [False, False, False, False, True]
    assert sent == [1]


async def test_ids_are_forgotten_after_the_window_and_beyond_the_limit():
    recent, sent = RecentIds(window=0.05, limit=2), []

    async def publish() -> None:
        sent.append(1)

    await recent.once("q", "a", publish)
    await asyncio.sleep(0.1)
    assert await recent.once("q", "a", publish) is True, "the window has passed"
    for mid in ("b", "c", "d"):
        await recent.once("q", mid, publish)
    assert await recent.once("q", "a", publish) is True, "the oldest id was dropped past the limit"


async def test_an_id_is_remembered_for_the_whole_window_and_each_spelling_is_its_own_id():
    recent, sent = RecentIds(window=0.3), []

    async def publish() -> None:
        sent.append(1)

    uid = str(uuid.uuid4())
    assert await recent.once("q", uid, publish) is True
    for _ in range(5):  # later slices of time come and go meanwhile
        await asyncio.sleep(0.04)
        await recent.once("q", str(uuid.uuid4()), publish)
    assert await recent.once("q", uid, publish) is False, "0.2 s into a 0.3 s window"
    assert await recent.once("q", uid.upper(), publish) is True, "another spelling is another id"
    assert await recent.once("other", uid, publish) is True, "the same id on another queue"
    recent.forget_queue("q")
    assert await recent.once("q", uid, publish) is True, "a deleted queue starts afresh"
