"""An in-process broker with the full delivery contract, for fast unit tests of the core and of
users' own plugins. ``memory://NAME`` shares one space per NAME inside a process; nothing
crosses processes and nothing survives the process. Never a stand-in in broker tests.

It polls instead of using asyncio primitives, so one space can be shared by code running on
different event loops (the sync facade's loop thread and a test's loop).
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from orquestrador.brokers.base import (
    Broker,
    Capabilities,
    Consumer,
    Delivery,
    EventCallback,
    Message,
    QueueStats,
    dlq_of,
    validate_queue_name,
)
from orquestrador.brokers.support.dedup import WINDOW as DEDUP_WINDOW

_POLL = 0.005


@dataclass
class _Entry:
    seq: int
    body: bytes
    headers: dict[str, str]
    message_id: str | None
    published_at: float = field(default_factory=time.time)
    deliveries: int = 0
    available_at: float = 0.0  # monotonic; for delayed nacks
    deadline: float = 0.0  # monotonic; visibility timeout while in flight
    token: int = 0  # changes on each delivery, so a stale Delivery cannot settle a newer one


@dataclass
class _Queue:
    waiting: dict[int, _Entry] = field(default_factory=dict)
    in_flight: dict[int, _Entry] = field(default_factory=dict)
    consumers: int = 0


class _Space:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.queues: dict[str, _Queue] = {}
        self.seq = itertools.count(1)
        self.tokens = itertools.count(1)
        self.listeners: dict[str, list[tuple[asyncio.AbstractEventLoop, EventCallback]]] = {}
        self.recent: dict[tuple[str, str], float] = {}  # (queue, message_id) -> published at

    def first_within_window(self, queue: str, message_id: str) -> bool:
        """Record ``message_id``; False if it was published to ``queue`` within the window."""
        now = time.monotonic()
        if len(self.recent) > 10_000:
            self.recent = {k: t for k, t in self.recent.items() if now - t < DEDUP_WINDOW}
        if now - self.recent.get((queue, message_id), -DEDUP_WINDOW) < DEDUP_WINDOW:
            return False
        self.recent[(queue, message_id)] = now
        return True

    def queue(self, name: str) -> _Queue:
        return self.queues.setdefault(name, _Queue())

    def expire(self, queue: _Queue, now: float) -> None:
        for seq, entry in list(queue.in_flight.items()):
            if entry.deadline <= now:
                del queue.in_flight[seq]
                queue.waiting[seq] = entry


_SPACES: dict[str, _Space] = {}
_SPACES_LOCK = threading.Lock()


def _space(name: str) -> _Space:
    with _SPACES_LOCK:
        return _SPACES.setdefault(name, _Space())


class MemoryDelivery(Delivery):
    def __init__(self, broker: MemoryBroker, queue: str, entry: _Entry, visibility: float) -> None:
        self._broker = broker
        self._entry = entry
        self._token = entry.token
        self._visibility = visibility
        self.body = entry.body
        self.headers = dict(entry.headers)
        self.queue = queue
        self.attempt = entry.deliveries
        self.message_id = entry.message_id
        self.position = (entry.seq,)

    def _take(self) -> _Entry | None:
        q = self._broker._space.queue(self.queue)
        entry = q.in_flight.get(self._entry.seq)
        if entry is None or entry.token != self._token:
            return None  # timed out and redelivered elsewhere: this delivery lost its lease
        return entry

    async def ack(self) -> None:
        with self._broker._space.lock:
            if self._take() is not None:
                del self._broker._space.queue(self.queue).in_flight[self._entry.seq]

    async def nack(self, delay: float = 0.0) -> None:
        with self._broker._space.lock:
            entry = self._take()
            if entry is not None:
                q = self._broker._space.queue(self.queue)
                del q.in_flight[entry.seq]
                entry.available_at = time.monotonic() + max(0.0, delay)
                q.waiting[entry.seq] = entry

    async def heartbeat(self) -> None:
        with self._broker._space.lock:
            entry = self._take()
            if entry is not None:
                entry.deadline = time.monotonic() + self._visibility

    async def _publish_dead_letter(self, dlq: str, headers: dict[str, str]) -> None:
        await self._broker.publish(dlq, self.body, headers=headers)


class MemoryConsumer(Consumer):
    def __init__(self, broker: MemoryBroker, queue: str, visibility: float) -> None:
        self._broker = broker
        self._queue = queue
        self._visibility = visibility
        self._closed = False

    async def fetch(self, max_messages: int, timeout: float) -> list[Delivery]:
        end = time.monotonic() + timeout
        while not self._closed:
            batch = self._take(max_messages)
            if batch or time.monotonic() >= end:
                return batch
            await asyncio.sleep(_POLL)
        return []

    def _take(self, max_messages: int) -> list[Delivery]:
        space = self._broker._space
        now = time.monotonic()
        out: list[Delivery] = []
        with space.lock:
            q = space.queue(self._queue)
            space.expire(q, now)
            for seq in sorted(q.waiting):
                if len(out) >= max_messages:
                    break
                entry = q.waiting[seq]
                if entry.available_at > now:
                    continue
                del q.waiting[seq]
                entry.deliveries += 1
                entry.token = next(space.tokens)
                entry.deadline = now + self._visibility
                q.in_flight[seq] = entry
                out.append(MemoryDelivery(self._broker, self._queue, entry, self._visibility))
        return out

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            with self._broker._space.lock:
                self._broker._space.queue(self._queue).consumers -= 1


class MemoryBroker(Broker):
    scheme = "memory"
    capabilities = Capabilities.lacking("shared_slots", "cross_process", "counts_reconnects")

    def __init__(self, url: str = "memory://") -> None:
        super().__init__(url)
        self._space = _space(urlsplit(url).netloc or "default")

    async def connect(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def declare(self, queue: str) -> None:
        validate_queue_name(queue)
        with self._space.lock:
            self._space.queue(queue)
            self._space.queue(dlq_of(queue))

    async def publish(
        self,
        queue: str,
        body: bytes,
        *,
        message_id: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        validate_queue_name(queue)
        with self._space.lock:
            if message_id and not self._space.first_within_window(queue, message_id):
                return  # published already within the dedup window, as NATS and Redis do
            seq = next(self._space.seq)
            self._space.queue(queue).waiting[seq] = _Entry(seq, bytes(body), dict(headers or {}), message_id)

    async def consume(self, queue: str, *, visibility_timeout: float = 30.0, prefetch: int = 16) -> Consumer:
        await self.declare(queue)
        with self._space.lock:
            self._space.queue(queue).consumers += 1
        return MemoryConsumer(self, queue, visibility_timeout)

    async def stats(self, queue: str) -> QueueStats:
        with self._space.lock:
            q = self._space.queue(queue)
            self._space.expire(q, time.monotonic())
            dead = len(self._space.queue(dlq_of(queue)).waiting) if queue != dlq_of(queue) else 0
            entries = list(q.waiting.values()) + list(q.in_flight.values())
            oldest = min((e.published_at for e in entries), default=None)
            return QueueStats(
                queue=queue,
                depth=len(q.waiting),
                in_flight=len(q.in_flight),
                dead_letters=dead,
                consumers=q.consumers,
                oldest_age=None if oldest is None else time.time() - oldest,
            )

    async def dead_letter_snapshot(self, queue: str) -> tuple[int, tuple[int, ...] | None]:
        with self._space.lock:
            q = self._space.queue(dlq_of(queue))
            seqs = [*q.waiting, *q.in_flight]
            return len(seqs), (max(seqs, default=0),)

    async def peek(self, queue: str, limit: int = 10) -> list[Message]:
        with self._space.lock:
            q = self._space.queue(queue)
            entries = sorted([*q.waiting.values(), *q.in_flight.values()], key=lambda e: e.seq)
            return [Message(e.body, dict(e.headers), str(e.seq)) for e in entries[:limit]]

    async def purge(self, queue: str) -> int:
        with self._space.lock:
            q = self._space.queue(queue)
            dropped = len(q.waiting)
            q.waiting.clear()
            return dropped

    async def delete(self, queue: str) -> None:
        with self._space.lock:
            self._space.queues.pop(queue, None)
            self._space.queues.pop(dlq_of(queue), None)
            self._space.recent = {k: t for k, t in self._space.recent.items() if k[0] != queue}

    async def queues(self) -> list[str]:
        with self._space.lock:
            return sorted(self._space.queues)

    async def publish_event(self, subject: str, body: bytes) -> None:
        with self._space.lock:
            listeners = list(self._space.listeners.get(subject, ()))
        for loop, callback in listeners:
            loop.call_soon_threadsafe(_invoke, callback, body)

    async def subscribe_events(self, subject: str, callback: EventCallback) -> Callable[[], Awaitable[None]]:
        item = (asyncio.get_running_loop(), callback)
        with self._space.lock:
            self._space.listeners.setdefault(subject, []).append(item)

        async def unsubscribe() -> None:
            with self._space.lock:
                entries = self._space.listeners.get(subject, [])
                if item in entries:
                    entries.remove(item)

        return unsubscribe


_BACKGROUND: set[asyncio.Future[None]] = set()


def _invoke(callback: EventCallback, body: bytes) -> None:
    result = callback(body)
    if asyncio.iscoroutine(result):
        task = asyncio.ensure_future(result)
        _BACKGROUND.add(task)
        task.add_done_callback(_BACKGROUND.discard)
