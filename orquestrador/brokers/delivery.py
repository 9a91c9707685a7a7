"""What a consumer is handed: one delivered message and the ways to settle it, the pull consumer
that fetches them, and what inspection shows of a queue (a peeked message, its stats).

Adapters subclass :class:`Delivery` and :class:`Consumer`; the worker runtime only ever sees
these (the delivery contract they keep is in :mod:`.base`).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

from orquestrador.brokers.queues import dead_letter_headers, dlq_of

# Where a message sits in its queue, comparable within one queue: a NATS stream sequence, a Redis
# stream id (ms, seq), the memory broker's counter. RabbitMQ has none (``None``).
Position = tuple[int, ...]


@dataclass(frozen=True)
class Message:
    """A message seen without being consumed (peek), with the broker's id for it."""

    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    id: str = ""


@dataclass(frozen=True)
class QueueStats:
    """What `orq queues` shows. ``None`` means the broker cannot tell."""

    queue: str
    depth: int  # waiting to be delivered
    in_flight: int  # delivered, not yet acked, as far as this client can tell (RabbitMQ: its own)
    dead_letters: int  # in <queue>.dlq
    consumers: int | None = None
    oldest_age: float | None = None  # seconds


class Delivery(abc.ABC):
    """One delivered message. Exactly one of ack / nack / dead_letter settles it."""

    body: bytes
    headers: dict[str, str]
    queue: str
    attempt: int  # 1-based delivery count kept by the broker (see the module docstring)
    message_id: str | None  # broker-level id if the publisher set one
    position: Position | None = None  # see Position; lets replay tell old dead letters from new
    # Why broker-level fields (headers, ids, counters) could not be read, if so: the runtime
    # dead-letters such a delivery with this reason instead of running it (see brokers.intake).
    problem: str | None = None
    # The resultado envelope the runtime answered this job with, set before it acks: a broker that
    # keeps a job's return value (BullMQ's ``returnvalue``) stores it with the ack.
    reply: bytes | None = None

    @abc.abstractmethod
    async def ack(self) -> None:
        """The job is done: remove the message for good."""

    @abc.abstractmethod
    async def nack(self, delay: float = 0.0) -> None:
        """Give it back for another attempt after ``delay`` seconds, without blocking the caller."""

    @abc.abstractmethod
    async def heartbeat(self) -> None:
        """Still working: push the visibility timeout forward."""

    # defer() leaves the attempt count as it was (else the broker counts it: see worker.gate).
    defer_is_free: bool = False

    async def defer(self, delay: float) -> None:
        """Hold back a job that may not start yet for ``delay`` seconds, without blocking.

        This default is ``nack(delay)``, which most brokers count as a delivery; adapters whose
        delayed copy carries the count set it back instead (``defer_is_free``).
        """
        await self.nack(delay)

    def underlying(self) -> Delivery:
        """The adapter's own delivery, for its batched ``ack_many``: this one, unless it wraps
        another (a priority lane's, :mod:`.support.lanes`)."""
        return self

    async def dead_letter(self, reason: str, *, error_type: str = "Error") -> None:
        """Move the message to ``<queue>.dlq`` (durably) and then remove it from ``queue``.

        This template publishes first and acks after, so a crash in between duplicates and never
        loses; an adapter supplies :meth:`_publish_dead_letter`, or overrides this when its
        broker does both in one step (Redis: MULTI/EXEC) or a lease must be held meanwhile.
        """
        await self._publish_dead_letter(dlq_of(self.queue), self.dead_letter_headers(reason, error_type))
        await self.ack()

    async def _publish_dead_letter(self, dlq: str, headers: dict[str, str]) -> None:
        """Publish ``body`` with ``headers`` to ``dlq``, returning once the broker holds it."""
        raise NotImplementedError(f"{type(self).__name__} does not dead-letter")

    def dead_letter_headers(self, reason: str, error_type: str) -> dict[str, str]:
        """This message's headers for its dead letter: its own plus why, what and how often."""
        return dead_letter_headers(
            self.headers, queue=self.queue, reason=reason, error_type=error_type, attempts=self.attempt
        )


class Consumer(abc.ABC):
    """A pull consumer on one queue, shared by every worker of that queue."""

    @abc.abstractmethod
    async def fetch(self, max_messages: int, timeout: float) -> list[Delivery]:
        """Up to ``max_messages``; an empty list when nothing arrives within ``timeout``."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop fetching. Unsettled deliveries go back to the queue (now or at their timeout)."""
