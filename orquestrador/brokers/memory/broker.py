"""The in-memory broker: queues of a :class:`~.space.Space`, events to listeners in the process."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from orquestrador.brokers.base import (
    Broker,
    Capabilities,
    Consumer,
    EventCallback,
    Message,
    QueueStats,
    TopicCallback,
    Unsubscribe,
    dlq_of,
    validate_queue_name,
)
from orquestrador.brokers.memory.consumer import MemoryConsumer
from orquestrador.brokers.memory.space import space
from orquestrador.topics.delivery import deliver_live
from orquestrador.topics.patterns import matches

log = logging.getLogger(__name__)


class MemoryBroker(Broker):
    scheme = "memory"
    capabilities = Capabilities.lacking(
        "durable_topics", "shared_slots", "cross_process", "counts_reconnects"
    )  # fmt: skip

    def __init__(self, url: str = "memory://") -> None:
        super().__init__(url)
        self.space = space(urlsplit(url).netloc or "default")

    async def connect(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def declare(self, queue: str) -> None:
        validate_queue_name(queue)
        with self.space.lock:
            self.space.queue(queue)
            self.space.queue(dlq_of(queue))

    async def publish(
        self,
        queue: str,
        body: bytes,
        *,
        message_id: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        validate_queue_name(queue)
        with self.space.lock:
            if message_id and not self.space.first_within_window(queue, message_id):
                return  # published already within the dedup window, as NATS and Redis do
            self.space.append(queue, body, headers or {}, message_id)

    async def consume(self, queue: str, *, visibility_timeout: float = 30.0, prefetch: int = 16) -> Consumer:
        await self.declare(queue)
        with self.space.lock:
            self.space.queue(queue).consumers += 1
        return MemoryConsumer(self, self.space, queue, visibility_timeout)

    async def stats(self, queue: str) -> QueueStats:
        with self.space.lock:
            q = self.space.queue(queue)
            self.space.expire(q, time.monotonic())
            dead = len(self.space.queue(dlq_of(queue)).waiting) if queue != dlq_of(queue) else 0
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
        with self.space.lock:
            q = self.space.queue(dlq_of(queue))
            seqs = [*q.waiting, *q.in_flight]
            return len(seqs), (max(seqs, default=0),)

    async def peek(self, queue: str, limit: int = 10) -> list[Message]:
        with self.space.lock:
            q = self.space.queue(queue)
            entries = sorted([*q.waiting.values(), *q.in_flight.values()], key=lambda e: e.seq)
            return [Message(e.body, dict(e.headers), str(e.seq)) for e in entries[:limit]]

    async def purge(self, queue: str) -> int:
        with self.space.lock:
            q = self.space.queue(queue)
            dropped = len(q.waiting)
            q.waiting.clear()
            return dropped

    async def delete(self, queue: str) -> None:
        with self.space.lock:
            self.space.queues.pop(queue, None)
            self.space.queues.pop(dlq_of(queue), None)
            self.space.recent = {k: t for k, t in self.space.recent.items() if k[0] != queue}

    async def queues(self) -> list[str]:
        with self.space.lock:
            return sorted(self.space.queues)

    async def publish_event(self, subject: str, body: bytes) -> None:
        self._notify(self.space.listeners, subject, body)

    async def subscribe_events(self, subject: str, callback: EventCallback) -> Callable[[], Awaitable[None]]:
        """In-process listeners; ``subject`` may be a NATS-style pattern (``*``, ``>``)."""
        return self._listen(self.space.listeners, subject, callback)

    async def publish_topic(self, topic: str, body: bytes) -> None:
        self._notify(self.space.topic_listeners, topic, body)

    async def subscribe_topic(
        self, pattern: str, callback: TopicCallback, *, durable: str | None = None
    ) -> Unsubscribe:
        if durable is not None:
            self.refuse_durable(durable)

        async def filtered(body: bytes) -> None:
            await deliver_live(pattern, body, callback)

        return self._listen(self.space.topic_listeners, pattern, filtered)

    def _notify(self, where: dict[str, list[Listener]], subject: str, body: bytes) -> None:
        with self.space.lock:
            listeners = [item for key, items in where.items() if matches(key, subject) for item in items]
        for loop, callback in listeners:
            loop.call_soon_threadsafe(_invoke, callback, body)

    def _listen(self, where: dict[str, list[Listener]], key: str, callback: EventCallback) -> Unsubscribe:
        item = (asyncio.get_running_loop(), callback)
        with self.space.lock:
            where.setdefault(key, []).append(item)

        async def unsubscribe() -> None:
            with self.space.lock:
                entries = where.get(key, [])
                if item in entries:
                    entries.remove(item)
                if not entries:
                    where.pop(key, None)

        return unsubscribe


Listener = tuple[asyncio.AbstractEventLoop, EventCallback]
_BACKGROUND: set[asyncio.Future[None]] = set()


def _invoke(callback: EventCallback, body: bytes) -> None:
    try:
        result = callback(body)
    except Exception:
        log.exception("event callback failed")
        return
    if asyncio.iscoroutine(result):
        task = asyncio.ensure_future(result)
        _BACKGROUND.add(task)
        task.add_done_callback(_finished)


def _finished(task: asyncio.Future[None]) -> None:
    _BACKGROUND.discard(task)
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("event callback failed", exc_info=exc)
