"""Where in-memory messages live: a :class:`Space` per ``memory://NAME``, shared by every broker
object of that name in the process, guarded by one thread lock.

It is public so that a broker built on top of it (the test tree's toy broker, a user's own
experiment) stores messages the same way. Every method here expects the caller to hold
``space.lock``: a broker usually does several steps as one.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from dataclasses import dataclass, field

from orquestrador.brokers.base import EventCallback
from orquestrador.brokers.support.dedup import WINDOW as DEDUP_WINDOW


@dataclass
class Entry:
    """One stored message and its delivery state."""

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
class Store:
    """One queue: entries waiting (by sequence number) and entries handed out."""

    waiting: dict[int, Entry] = field(default_factory=dict)
    in_flight: dict[int, Entry] = field(default_factory=dict)
    consumers: int = 0


class Space:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.queues: dict[str, Store] = {}
        self.seq = itertools.count(1)
        self.tokens = itertools.count(1)
        # By subject or NATS-style pattern: events, and topics apart (a topic subscriber of
        # ``orq.>`` must not get the lifecycle events of ``orq.eventos``).
        self.listeners: dict[str, list[tuple[asyncio.AbstractEventLoop, EventCallback]]] = {}
        self.topic_listeners: dict[str, list[tuple[asyncio.AbstractEventLoop, EventCallback]]] = {}
        self.recent: dict[tuple[str, str], float] = {}  # (queue, message_id) -> published at

    def queue(self, name: str) -> Store:
        return self.queues.setdefault(name, Store())

    def append(self, queue: str, body: bytes, headers: dict[str, str], message_id: str | None) -> Entry:
        """Store a message at the back of ``queue``, whatever was there before."""
        entry = Entry(next(self.seq), bytes(body), dict(headers), message_id)
        self.queue(queue).waiting[entry.seq] = entry
        return entry

    def hand_out(self, queue: str, limit: int, visibility: float) -> list[Entry]:
        """Up to ``limit`` due entries, oldest first, now in flight for ``visibility`` seconds
        (``inf``: until settled); entries whose lease ran out are due again first."""
        now = time.monotonic()
        q = self.queue(queue)
        self.expire(q, now)
        out: list[Entry] = []
        for seq in sorted(q.waiting):
            if len(out) >= limit:
                break
            entry = q.waiting[seq]
            if entry.available_at > now:
                continue
            del q.waiting[seq]
            entry.deliveries += 1
            entry.token = next(self.tokens)
            entry.deadline = now + visibility
            q.in_flight[seq] = entry
            out.append(entry)
        return out

    def expire(self, queue: Store, now: float) -> None:
        for seq, entry in list(queue.in_flight.items()):
            if entry.deadline <= now:
                del queue.in_flight[seq]
                queue.waiting[seq] = entry

    def first_within_window(self, queue: str, message_id: str) -> bool:
        """Record ``message_id``; False if it was published to ``queue`` within the window."""
        now = time.monotonic()
        if len(self.recent) > 10_000:
            self.recent = {k: t for k, t in self.recent.items() if now - t < DEDUP_WINDOW}
        if now - self.recent.get((queue, message_id), -DEDUP_WINDOW) < DEDUP_WINDOW:
            return False
        self.recent[(queue, message_id)] = now
        return True


_SPACES: dict[str, Space] = {}
_SPACES_LOCK = threading.Lock()


def space(name: str) -> Space:
    """The process's space called ``name`` (created on first use)."""
    with _SPACES_LOCK:
        return _SPACES.setdefault(name, Space())
