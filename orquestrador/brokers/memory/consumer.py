"""The in-memory consumer and delivery: a lease per hand-out, settled only by its own token."""

from __future__ import annotations

import asyncio
import time

from orquestrador.brokers.base import Broker, Consumer, Delivery
from orquestrador.brokers.memory.space import Entry, Space

POLL = 0.005


class MemoryDelivery(Delivery):
    def __init__(self, broker: Broker, space: Space, queue: str, entry: Entry, visibility: float) -> None:
        self._broker = broker
        self._space = space
        self._entry = entry
        self._token = entry.token
        self._visibility = visibility
        self.body = entry.body
        self.headers = dict(entry.headers)
        self.queue = queue
        self.attempt = entry.deliveries
        self.message_id = entry.message_id
        self.position = (entry.seq,)

    def _take(self) -> Entry | None:
        q = self._space.queue(self.queue)
        entry = q.in_flight.get(self._entry.seq)
        if entry is None or entry.token != self._token:
            return None  # timed out and redelivered elsewhere: this delivery lost its lease
        return entry

    async def ack(self) -> None:
        with self._space.lock:
            if self._take() is not None:
                del self._space.queue(self.queue).in_flight[self._entry.seq]

    async def nack(self, delay: float = 0.0) -> None:
        with self._space.lock:
            entry = self._take()
            if entry is not None:
                q = self._space.queue(self.queue)
                del q.in_flight[entry.seq]
                entry.available_at = time.monotonic() + max(0.0, delay)
                q.waiting[entry.seq] = entry

    async def heartbeat(self) -> None:
        with self._space.lock:
            entry = self._take()
            if entry is not None:
                entry.deadline = time.monotonic() + self._visibility

    async def _publish_dead_letter(self, dlq: str, headers: dict[str, str]) -> None:
        await self._broker.publish(dlq, self.body, headers=headers)


class MemoryConsumer(Consumer):
    def __init__(self, broker: Broker, space: Space, queue: str, visibility: float) -> None:
        self._broker = broker
        self._space = space
        self._queue = queue
        self._visibility = visibility
        self._closed = False

    async def fetch(self, max_messages: int, timeout: float) -> list[Delivery]:
        end = time.monotonic() + timeout
        while not self._closed:
            batch = self._take(max_messages)
            if batch or time.monotonic() >= end:
                return batch
            await asyncio.sleep(POLL)
        return []

    def _take(self, max_messages: int) -> list[Delivery]:
        with self._space.lock:
            entries = self._space.hand_out(self._queue, max_messages, self._visibility)
        return [MemoryDelivery(self._broker, self._space, self._queue, e, self._visibility) for e in entries]

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            with self._space.lock:
                self._space.queue(self._queue).consumers -= 1
