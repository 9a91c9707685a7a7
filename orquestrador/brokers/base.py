"""The broker interface every adapter implements, and the pieces they share.

A broker moves opaque bytes between named queues; it knows nothing of envelopes. The worker
runtime sits on top and decides what to ack, retry or dead-letter. Every adapter keeps the
delivery contract of DESIGN.md, proven by ``tests/contract``:

1. ``publish`` returns only once the broker holds the message durably.
2. A message leaves its queue only when a consumer acks it.
3. An unacked message returns to the queue after the visibility timeout, unless its consumer
   keeps sending ``heartbeat()``.
4. ``Delivery.attempt`` counts deliveries (1 on the first) from state the broker keeps — its
   own delivery count, or (RabbitMQ classic queues) a header the adapter restamps on every
   redelivery — so it survives worker restarts and crashes.
5. Queues can be inspected, peeked without consuming, purged, and dead letters replayed.

Dead letters live in ``<queue>.dlq`` (:mod:`.queues`: names and dead-letter headers). What each
broker does by itself is its :class:`~.capabilities.Capabilities`; the rest comes from
:mod:`.support`. What a consumer is handed (:class:`Delivery`) lives in :mod:`.delivery`.
"""

from __future__ import annotations

import abc
import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import ClassVar

from orquestrador.brokers.capabilities import Capabilities
from orquestrador.brokers.delivery import (  # re-exported: adapters import them from here
    Consumer,
    Delivery,
    Message,
    Position,
    QueueStats,
)
from orquestrador.brokers.queues import (  # re-exported: the names adapters and the runtime use
    DLQ_AT,
    DLQ_ATTEMPTS,
    DLQ_ERROR_TYPE,
    DLQ_HEADERS,
    DLQ_LANE,
    DLQ_QUEUE,
    DLQ_REASON,
    DLQ_SUFFIX,
    JOB_QUEUE_PREFIXES,
    dead_letter_headers,
    dlq_of,
    origin_of,
    strip_dead_letter_headers,
    validate_queue_name,
    validate_results_queue,
)
from orquestrador.brokers.shared import SharedState
from orquestrador.brokers.slots import LocalSlots, Slots
from orquestrador.brokers.support.dedup import RecentIds
from orquestrador.errors import BrokerError, ConfigError
from orquestrador.job_options import JobOptions
from orquestrador.settings import TlsPaths, redact_url, split_tls
from orquestrador.topics.delivery import TopicCallback as TopicCallback  # re-exported for adapters

EventCallback = Callable[[bytes], Awaitable[None] | None]
Unsubscribe = Callable[[], Awaitable[None]]
# Where the default topics go on the events path (and topics on NATS): never a lifecycle event's
# subject (``orq.eventos``), so a subscriber of ``>`` gets topics only.
TOPIC_SUBJECT_PREFIX = "orq.topico."

log = logging.getLogger(__name__)

class Broker(abc.ABC):
    """A connection to one broker. Create with :func:`orquestrador.brokers.connect`."""

    scheme: ClassVar[str]
    display_name: ClassVar[str] = ""  # "NATS", "Redis": how messages name the broker (else the scheme)
    host_required: ClassVar[bool] = True  # False: the URL may omit the host (sqs:// takes the AWS region)
    # Declared by every adapter (see Capabilities); the registry refuses an adapter without one.
    capabilities: Capabilities  # a class attribute; an instance may refine it from its URL
    # Connections re-established so far, where ``capabilities.counts_reconnects``.
    reconnects: int = 0
    _recent_ids: RecentIds | None = None  # ids this connection published (without server_dedup)
    # Job timing (orquestrador.job_options) the broker does itself; the rest is emulated the same
    # way everywhere: priority lanes (support.lanes) and the worker's check at intake (worker.gate).
    native_priority: ClassVar[bool] = False
    delays_at_publish: ClassVar[bool] = False
    lane_poll: ClassVar[float] = 0.1  # seconds between a worker's looks at empty lanes

    def __init__(self, url: str) -> None:
        """Adapters take the URL as their only positional argument (the registry calls them so)
        and call this first: it keeps the URL, shown only redacted, and splits the TLS files off
        it (``plain_url`` for the driver, ``tls`` None on plain schemes)."""
        self.url = url
        self.plain_url: str
        self.tls: TlsPaths | None
        self.plain_url, self.tls = split_tls(url)
        self._declared: set[str] = set()  # see declare()
        self._declaring: dict[str, asyncio.Future[None]] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({redact_url(self.url)!r})"

    def not_connected(self) -> BrokerError:
        """What a call before ``connect()`` (or after ``close()``) raises."""
        name = self.display_name or self.scheme
        return BrokerError(f"{name} broker is not connected: call connect() first")

    @abc.abstractmethod
    async def connect(self) -> None:
        """Open the connection; raise BrokerUnavailable with a clear line if it cannot."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    async def declare(self, queue: str) -> None:
        """Make sure ``queue`` and ``queue.dlq`` exist; idempotent.

        This template checks the name, then declares on the broker (:meth:`_declare_new`) only
        the names this connection has not declared yet, once: callers at the same moment wait for
        the declare in flight. :meth:`forget` sends the next declare of a name to the broker again
        (it was deleted, or the connection was re-made).
        """
        validate_queue_name(queue)
        if queue in self._declared:
            return
        pending = self._declaring.get(queue)
        if pending is None:
            pending = self._declaring[queue] = asyncio.ensure_future(self._declare_pair(queue))
            pending.add_done_callback(lambda _f: self._declaring.pop(queue, None))
        await asyncio.shield(pending)

    async def _declare_pair(self, queue: str) -> None:
        names = [queue] if queue.endswith(DLQ_SUFFIX) else [queue, dlq_of(queue)]
        await self._declare_new([name for name in names if name not in self._declared])
        self._declared.update(names)

    async def _declare_new(self, names: list[str]) -> None:
        """Create ``names`` on the broker (a queue, its dead-letter queue) if they do not exist."""
        raise NotImplementedError(f"{type(self).__name__} declares no queues")

    def forget(self, name: str) -> None:
        """``name`` is to be declared on the broker again next time."""
        self._declared.discard(name)

    @abc.abstractmethod
    async def publish(
        self,
        queue: str,
        body: bytes,
        *,
        message_id: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Return once the broker holds the message durably."""

    async def job_queue(self, queue: str, options: JobOptions) -> str:
        """The queue a job with ``options`` goes to: ``queue``, or its priority lane (declared).

        Brokers without ``native_priority`` keep urgent jobs in lanes beside the queue, which
        workers read first (:mod:`.support.lanes`).
        """
        from orquestrador.brokers.support.lanes import lane_of  # it builds on this module

        if self.native_priority:
            return queue
        lane = lane_of(queue, options.prioridade)
        if lane != queue:
            await self.declare(lane)
        return lane

    async def publish_many(
        self, queue: str, items: Iterable[tuple[bytes, str | None]], *, window: int = 256
    ) -> int:
        """Publish many messages with up to ``window`` confirmations in flight at once."""
        pending: set[asyncio.Task[None]] = set()
        count = 0
        for body, message_id in items:
            pending.add(asyncio.ensure_future(self.publish(queue, body, message_id=message_id)))
            count += 1
            if len(pending) >= window:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()
        if pending:
            for outcome in await asyncio.gather(*pending, return_exceptions=True):
                if isinstance(outcome, BaseException):
                    raise outcome
        return count

    async def ack_many(self, deliveries: Sequence[Delivery]) -> int:
        """Ack a batch (e.g. the results just recorded); returns how many acks failed.

        Adapters override it to settle the whole batch in one round trip instead of one each.
        A failed ack only means a redelivery, which the store's dedup absorbs.
        """
        limit = asyncio.Semaphore(16)  # on Redis each ack borrows a pooled connection

        async def ack(delivery: Delivery) -> None:
            async with limit:
                await delivery.ack()

        outcomes = await asyncio.gather(*(ack(d) for d in deliveries), return_exceptions=True)
        return sum(isinstance(o, Exception) for o in outcomes)

    @abc.abstractmethod
    async def consume(
        self, queue: str, *, visibility_timeout: float = 30.0, prefetch: int = 16
    ) -> Consumer: ...

    @abc.abstractmethod
    async def stats(self, queue: str) -> QueueStats: ...

    @abc.abstractmethod
    async def peek(self, queue: str, limit: int = 10) -> list[Message]:
        """The oldest ``limit`` messages, left where they are."""

    @abc.abstractmethod
    async def purge(self, queue: str) -> int:
        """Drop every waiting message; returns how many were dropped."""

    @abc.abstractmethod
    async def delete(self, queue: str) -> None:
        """Remove ``queue`` and ``queue.dlq`` with everything in them."""

    @abc.abstractmethod
    async def queues(self) -> list[str]:
        """Names of the queues this toolkit declared on the broker (dead-letter queues too)."""

    async def dead_letter_snapshot(self, queue: str) -> tuple[int, Position | None]:
        """How many dead letters ``queue`` has now, and the position of the newest, if known.

        :meth:`replay` moves only these, so a message dead-lettered again while it runs waits for
        the next replay instead of making it loop. Adapters whose deliveries carry a
        ``position`` override this; the default (count only) relies on the DLQ being FIFO.
        """
        return (await self.stats(origin_of(queue))).dead_letters, None

    async def replay(
        self, queue: str, *, limit: int | None = None, progress: Callable[[int], None] | None = None
    ) -> int:
        """Move the dead letters ``queue`` has now back onto it, each once; returns how many.

        Each is published first, then acked in the DLQ (a crash in between duplicates, never
        loses); one taken from a priority lane goes back to its lane. ``progress`` is told how
        many moved after each batch.
        """
        from orquestrador.brokers.support.lanes import replay_target  # it builds on this module

        source, target = dlq_of(queue), origin_of(queue)
        count, last = await self.dead_letter_snapshot(target)
        budget = count if limit is None else min(count, limit)
        if budget <= 0:
            return 0
        consumer = await self.consume(source, visibility_timeout=30.0, prefetch=min(64, budget))
        moved = 0
        try:
            while moved < budget:
                batch = await consumer.fetch(min(64, budget - moved), timeout=2.0)
                if not batch:
                    break
                later: list[Delivery] = []
                for delivery in batch:
                    if moved >= budget or _newer(delivery, last):
                        later.append(delivery)
                        continue
                    to = await replay_target(self, target, delivery.headers)
                    await self.publish(to, delivery.body, headers=strip_dead_letter_headers(delivery.headers))
                    await delivery.ack()
                    moved += 1
                for delivery in later:  # back for the next replay, at once
                    await _release(delivery)
                if progress is not None:
                    progress(moved)
                if later:
                    break  # deliveries come oldest first: nothing older is left
        finally:
            await consumer.close()
        return moved

    async def deduplicated(
        self, queue: str, message_id: str | None, send: Callable[[], Awaitable[None]]
    ) -> None:
        """Run ``send`` (one publish) unless ``message_id`` went to ``queue`` within the dedup window.

        With ``capabilities.server_dedup`` the broker drops the copy itself and ``send`` always
        runs; without it this connection remembers its own ids (:mod:`.support.dedup`).
        """
        if not message_id or self.capabilities.server_dedup:
            await send()
            return
        if self._recent_ids is None:
            self._recent_ids = RecentIds()
        await self._recent_ids.once(queue, message_id, send)

    def forget_ids(self, queue: str) -> None:
        """A deleted queue starts afresh: its remembered ids go (no-op with server-side dedup)."""
        if self._recent_ids is not None:
            self._recent_ids.forget_queue(queue)

    def slots(self) -> Slots:
        """Where this broker's rate-limit slots live (see :mod:`orquestrador.brokers.slots`).

        This default keeps them in the process; adapters with ``capabilities.shared_slots``
        return a store on the server.
        """
        return LocalSlots()

    def shared_state(self) -> SharedState:
        """Where schedules keep their definitions and their scheduler's lease, shared by every
        process on this broker (see :mod:`orquestrador.brokers.shared`)."""
        name = self.display_name or self.scheme
        raise ConfigError(f"schedules are not available on {name}: its adapter keeps no shared state")

    async def publish_event(self, subject: str, body: bytes) -> None:  # noqa: B027
        """Best-effort lifecycle event (not durable). Default: dropped."""

    async def subscribe_events(self, subject: str, callback: EventCallback) -> Callable[[], Awaitable[None]]:
        """Receive best-effort events; returns an async unsubscribe. Default: none arrive."""

        async def _noop() -> None:
            return None

        return _noop

    async def publish_topic(self, topic: str, body: bytes) -> None:
        """Publish one message on ``topic`` (validated by the caller) for its subscribers.

        Returns once the broker took it; adapters with durable subscriptions keep it for them.
        Default: the live events path, so every adapter has live topics (best effort there),
        under the subject ``orq.topico.<topic>``, apart from the lifecycle events.
        """
        await self.publish_event(TOPIC_SUBJECT_PREFIX + topic, body)

    async def publish_topics(self, items: Sequence[tuple[str, bytes]]) -> int:
        """Publish many topic messages (``(topic, body)``, validated by the caller) as one batch;
        returns how many failed. Workers copy their results and events onto topics with it, off
        the jobs' path. Default: :meth:`publish_topic` each, a few at a time (on Redis each
        command borrows a pooled connection); adapters may pipeline the batch instead."""
        limit = asyncio.Semaphore(16)

        async def one(topic: str, body: bytes) -> None:
            async with limit:
                await self.publish_topic(topic, body)

        outcomes = await asyncio.gather(*(one(t, b) for t, b in items), return_exceptions=True)
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        if failed:
            log.debug("%d of %d topic messages not published: %s", len(failed), len(outcomes), failed[0])
        return len(failed)

    async def subscribe_topic(
        self, pattern: str, callback: TopicCallback, *, durable: str | None = None
    ) -> Unsubscribe:
        """Call ``callback`` for each message on a topic ``pattern`` matches; returns the async
        unsubscribe. Subscribed when it returns: nothing published afterwards is missed.

        Live (``durable=None``): only what is published while subscribed; a callback that
        raises is logged. Durable (a name, see
        :func:`~orquestrador.topics.delivery.validate_durable_name`): messages published while
        nobody listened under that name arrive when it is back, once per name (subscribers
        sharing a name share its messages), each acked after ``callback`` returns and retried
        as :mod:`orquestrador.topics.delivery` says if it raised; the latest subscribe's
        pattern is the name's. Either way only decodable messages whose topic
        :func:`~orquestrador.topics.matches` accepts arrive, whatever the broker's own
        wildcards do (see :func:`~orquestrador.topics.delivery.deliver_live`). Default: live,
        on the events path.
        """
        from orquestrador.topics.delivery import deliver_live

        if durable is not None:
            self.refuse_durable(pattern)

        async def filtered(body: bytes) -> None:
            await deliver_live(pattern, body, callback)

        return await self.subscribe_events(TOPIC_SUBJECT_PREFIX + pattern, filtered)

    async def delete_subscription(self, durable: str) -> None:
        """Forget the durable subscription ``durable`` and drop its backlog (no-op if unknown):
        a durable name keeps what is published for it until deleted or past the broker's
        retention (README, Topics). Default: nothing to delete on a live-only broker."""
        self.refuse_durable(durable)

    def refuse_durable(self, what: str) -> None:
        """Raise :class:`~orquestrador.errors.TopicError` unless ``capabilities.durable_topics``."""
        if not self.capabilities.durable_topics:
            from orquestrador.errors import TopicError

            raise TopicError(
                f"{self.display_name or self.scheme} offers live topic subscriptions only ({what!r}): "
                "subscribe without durable=, or use a broker whose capabilities have durable_topics"
            )

    async def __aenter__(self) -> Broker:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _newer(delivery: Delivery, last: Position | None) -> bool:
    """Dead-lettered after the replay's snapshot (only known where the broker keeps positions)."""
    return last is not None and delivery.position is not None and delivery.position > last


async def _release(delivery: Delivery) -> None:
    try:
        await delivery.nack()
    except BrokerError as exc:  # it comes back at its visibility timeout instead
        log.debug("dead letter not released after replay: %s", exc)


__all__ = [
    "DLQ_AT",
    "DLQ_ATTEMPTS",
    "DLQ_ERROR_TYPE",
    "DLQ_HEADERS",
    "DLQ_LANE",
    "DLQ_QUEUE",
    "DLQ_REASON",
    "DLQ_SUFFIX",
    "JOB_QUEUE_PREFIXES",
    "Broker",
    "Capabilities",
    "Consumer",
    "Delivery",
    "EventCallback",
    "Message",
    "Position",
    "QueueStats",
    "dead_letter_headers",
    "dlq_of",
    "origin_of",
    "strip_dead_letter_headers",
    "validate_queue_name",
    "validate_results_queue",
]
