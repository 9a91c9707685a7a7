"""Group commit for the worker: broker calls made by jobs finishing together leave together.

A busy worker finishes many jobs in the same turn of the event loop, each wanting to publish its
result and then ack its delivery. One broker round trip per call (and on Redis one pooled
connection per call) was most of a worker's cost. Each job still awaits its own call, so the
order "result durable, then ack" holds per job; only the transport is shared.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from orquestrador.brokers.base import Broker, Delivery
from orquestrador.errors import BrokerError

MAX_BATCH = 256


class _PerItem(Exception):
    """Some items of a flushed batch failed (index -> error); the others succeeded."""

    def __init__(self, errors: dict[int, BaseException]) -> None:
        super().__init__(f"{len(errors)} items failed")
        self.errors = errors


class _Batcher:
    """Items submitted in one loop turn are flushed in one call; every submitter gets the outcome."""

    def __init__(self) -> None:
        self._pending: list[tuple[Any, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, item: Any) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._task is None or self._task.done():
            # Runs after every task already ready in this turn: those join the same batch.
            self._task = asyncio.create_task(self._drain())
        await future

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            try:
                await self._flush([item for item, _ in batch])
            except _PerItem as partial:  # each submitter learns its own outcome
                for i, (_, future) in enumerate(batch):
                    if not future.done():
                        error = partial.errors.get(i)
                        if error is None:
                            future.set_result(None)
                        else:
                            future.set_exception(error)
            except Exception as exc:  # every submitter of the batch learns it failed
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            else:
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)

    async def _flush(self, items: list[Any]) -> None:
        raise NotImplementedError


class Publisher(_Batcher):
    """Results for the same queue published together (pipelined where the adapter can)."""

    def __init__(self, broker: Broker) -> None:
        super().__init__()
        self._broker = broker

    async def publish(self, queue: str, body: bytes, message_id: str | None) -> None:
        await self.submit((queue, body, message_id))

    async def _flush(self, items: list[tuple[str, bytes, str | None]]) -> None:
        if len(items) == 1:
            queue, body, message_id = items[0]
            await self._broker.publish(queue, body, message_id=message_id)
            return
        by_queue: dict[str, list[tuple[bytes, str | None]]] = defaultdict(list)
        for queue, body, message_id in items:
            by_queue[queue].append((body, message_id))
        outcomes = await asyncio.gather(
            *(self._broker.publish_many(q, group) for q, group in by_queue.items()), return_exceptions=True
        )
        failed = {q: o for q, o in zip(by_queue, outcomes, strict=True) if isinstance(o, BaseException)}
        if failed:  # only the jobs of a queue whose publish failed learn it: the others are out
            raise _PerItem({i: failed[item[0]] for i, item in enumerate(items) if item[0] in failed})


class Acker(_Batcher):
    """Acks of jobs finished together settled in one :meth:`Broker.ack_many`."""

    def __init__(self, broker: Broker) -> None:
        super().__init__()
        self._broker = broker

    async def ack(self, delivery: Delivery) -> None:
        await self.submit(delivery)

    async def _flush(self, items: Sequence[Delivery]) -> None:
        if len(items) == 1:
            await items[0].ack()
            return
        failed = await self._broker.ack_many([delivery.underlying() for delivery in items])
        if failed:
            raise BrokerError(f"{failed} of {len(items)} acks failed; those jobs will be redelivered")
