"""Consuming from Kafka: one group member per Consumer, with the fallbacks of :mod:`..support`.

:class:`KafkaConsumer` is an ``AIOKafkaConsumer`` in the queue's group, subscribed to the queue
(and its ``.retry`` topic). Kafka settles by committed offset, not per record, so each partition
has a :class:`~.ledger.Ledger` and the consumer commits the lowest offset not finished, with the
hand-out mark in the commit's metadata before any record is handed out: reserved ahead while it
waits for records, so a lone job does not wait for a commit on its way to its handler. Each
:class:`KafkaDelivery` holds a client-side lease (:mod:`..support.lease`): Kafka itself only
moves records when their consumer leaves the group.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import heapq
import itertools
import logging
import time
import uuid
from collections.abc import Awaitable
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata

from orquestrador.brokers.base import DLQ_SUFFIX, Consumer, Delivery
from orquestrador.brokers.kafka.assignor import BusyAwareAssignor
from orquestrador.brokers.kafka.delivery import KafkaDelivery, Raw, public_headers
from orquestrador.brokers.kafka.errors import DRIVER_ERRORS, CommitRefused, mapped
from orquestrador.brokers.kafka.ledger import Committed, Ledger
from orquestrador.brokers.kafka.names import DUE, MESSAGE_ID, UNCERTAIN, group_of, retry_topic, topics_of
from orquestrador.brokers.support import attempts as restamping
from orquestrador.brokers.support.delays import bucket_of
from orquestrador.brokers.support.lease import LeasedDelivery
from orquestrador.errors import BrokerError

log = logging.getLogger(__name__)

COMMIT_TIMEOUT = 10.0  # seconds; past it a commit is given up, tried again with the next one
MAX_WAITING_RETRIES = 10_000  # copies held in memory until due; past it their partition pauses
_seq = itertools.count()


class Host(Protocol):
    """What consumers need of their broker, so this module never imports it."""

    consumers: set[KafkaConsumer]

    def client_options(self) -> dict[str, Any]: ...

    def group_timeouts(self, visibility: float) -> dict[str, int]: ...

    async def declare(self, queue: str) -> None: ...

    async def retry_bucket(self, queue: str, delay: float) -> str: ...

    async def trim_dead_letters(self, dlq: str) -> None: ...

    async def send(
        self, topic: str, body: bytes, *, key: bytes | None, headers: list[tuple[str, bytes]]
    ) -> None: ...

    async def committed(
        self, group: str, partitions: list[TopicPartition]
    ) -> dict[TopicPartition, Committed]: ...

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]: ...


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, consumer: KafkaConsumer) -> None:
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.consumer.revoked()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self.consumer.assigned(list(assigned))


class KafkaConsumer(Consumer):
    """One member of the queue's consumer group; see the module docstring."""

    def __init__(self, broker: Host, queue: str, visibility: float, prefetch: int) -> None:
        self.broker = broker
        self.queue = queue
        self.visibility = visibility
        self.prefetch = max(1, prefetch)
        self.group = group_of(queue)
        self.topics = topics_of(queue)
        self.owner = uuid.uuid4().hex[:12]
        self.ledgers: dict[TopicPartition, Ledger] = {}
        self.held: set[LeasedDelivery[Raw]] = set()
        self.single_partition = False
        self._restamps = not queue.endswith(DLQ_SUFFIX)
        self._kc: AIOKafkaConsumer | None = None
        self._assigned = asyncio.Event()
        self._ready: collections.deque[Raw] = collections.deque()  # prefetched, marked, not given
        self._waiting: list[tuple[int, int, Raw]] = []  # retry copies by due time (ms)
        self._returned: list[Raw] = []  # handed back, but the copy could not be written yet
        self._tasks: set[asyncio.Task[None]] = set()
        self._commit_lock = asyncio.Lock()
        self._committer: asyncio.Task[None] | None = None
        self._dirty = False
        self._fetching = 0
        self._closed = False

    @property
    def in_flight(self) -> int:
        return sum(ledger.in_flight() for tp, ledger in self.ledgers.items() if tp.topic == self.queue)

    # -- group membership ------------------------------------------------------------------

    async def start(self, wait: float = 30.0) -> None:
        """Join the group and wait (up to ``wait``) for the first assignment, so the group is
        stable when this returns: consumers started one after the other share the work."""
        if self._kc is None:
            await self.broker.declare(self.queue)
            kc = AIOKafkaConsumer(
                group_id=self.group, enable_auto_commit=False, auto_offset_reset="earliest",
                partition_assignment_strategy=(BusyAwareAssignor(self._owned),),
                **self.broker.group_timeouts(self.visibility), **self.broker.client_options(),
            )  # fmt: skip
            with mapped(f"cannot consume from {self.queue}"):
                await kc.start()
            self._kc = kc
        if not self._kc.subscription():
            self._assigned.clear()
            self._kc.subscribe(self.topics, listener=_Listener(self))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._assigned.wait(), wait)

    def _owned(self) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
        owned = [(tp.topic, tp.partition) for tp, ledger in self.ledgers.items() if not ledger.lost]
        busy = [
            (tp.topic, tp.partition) for tp, ledger in self.ledgers.items() if not ledger.lost and ledger.busy
        ]
        return owned, busy

    async def revoked(self) -> None:
        """A rebalance starts: commit what is finished; ledgers stay until the new assignment."""
        self._assigned.clear()
        self._unmark()
        with contextlib.suppress(BrokerError):
            await self.flush(retry=False)

    async def assigned(self, assigned: list[TopicPartition]) -> None:
        """Keep the ledger of a partition nobody else owned meanwhile; start the others afresh."""
        try:
            committed = await self.broker.committed(self.group, assigned) if assigned else {}
        except BrokerError as exc:
            log.warning("cannot read the commits of %s (%s): in-flight records of an earlier owner "
                        "will not count an attempt", self.group, exc)  # fmt: skip
            committed = {}
        ends = await self._ends([tp for tp, c in committed.items() if c.handed > c.held])
        for tp in list(self.ledgers):
            if tp not in assigned:
                self._drop(tp)
        for tp in assigned:
            now = committed.get(tp, Committed(None))
            old = self.ledgers.get(tp)
            if old is not None and (old.ours(now) or (old.last is None and now.offset is None)):
                continue
            if old is not None:
                self._drop(tp)
            self.ledgers[tp] = Ledger(now, self.owner, end=ends.get(tp))
        main = [tp for tp in assigned if tp.topic == self.queue]
        if main and self._kc is not None:
            self.single_partition = len(self._kc.partitions_for_topic(self.queue) or ()) == 1
        self._assigned.set()

    async def _ends(self, reserved: list[TopicPartition]) -> dict[TopicPartition, int]:
        """Where the logs of partitions an earlier owner reserved ahead end (see the ledger)."""
        if not reserved:
            return {}
        try:
            return await self.broker.end_offsets(reserved)
        except BrokerError as exc:
            log.warning("cannot read where %s ends (%s): records written after its last owner "
                        "left may count an attempt they did not make", self.queue, exc)  # fmt: skip
            return {}

    def _drop(self, tp: TopicPartition) -> None:
        ledger = self.ledgers.pop(tp)
        ledger.lost = True
        self._waiting = [w for w in self._waiting if w[2].ledger is not ledger]
        heapq.heapify(self._waiting)
        self._returned = [r for r in self._returned if r.ledger is not ledger]
        self._ready = collections.deque(r for r in self._ready if r.ledger is not ledger)

    # -- fetching --------------------------------------------------------------------------

    async def fetch(self, max_messages: int, timeout: float) -> list[Delivery]:
        if self._closed:
            raise BrokerError(f"the consumer of {self.queue} is closed")
        self._fetching += 1
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + max(0.0, timeout)
            if self._kc is None or not self._kc.subscription():
                await self.start(wait=max(0.0, timeout))
            while True:
                self._move_due()
                self._retry_returned()
                out = await self._take(max(1, max_messages), deadline - loop.time())
                if out or loop.time() >= deadline:
                    return out
        finally:
            self._fetching -= 1

    async def _take(self, count: int, wait: float) -> list[Delivery]:
        kc = self._kc
        if kc is None:
            return []
        if not self._ready:
            if self._waiting:
                wait = min(wait, max(0.0, self._waiting[0][0] / 1000 - time.time()))
            self._reserve()
            with mapped(f"fetch from {self.queue} failed"):
                batch = await kc.getmany(timeout_ms=int(max(0.0, wait) * 1000), max_records=self.prefetch)
            await self._mark(self._classify(batch))
        return self._deliver(count)

    def _reserve(self) -> None:
        """Before waiting: let each partition's mark cover the next prefetch (two, so it is not
        renewed at every fetch), committed in the background while the fetch waits."""
        renew = False
        for tp, ledger in self.ledgers.items():
            if tp.topic == self.queue and not ledger.lost and ledger.position is not None:
                start = ledger.position
                renew |= ledger.reserve(start + self.prefetch - 1, start + 2 * self.prefetch - 1)
        if renew:
            self.commit_soon()

    def _classify(self, batch: dict[TopicPartition, list[ConsumerRecord[Any, Any]]]) -> list[Raw]:
        """Records to hand out; redeliveries go to be restamped and retry copies to wait."""
        fresh: list[Raw] = []
        for tp, records in batch.items():
            ledger = self.ledgers.get(tp)
            if ledger is None or ledger.lost:
                continue  # the assignment is changing: whoever owns it next reads it again
            for record in records:
                kind = ledger.classify(record.offset)
                if kind == "skip":
                    continue
                raw = Raw(self, tp, record, ledger, redelivered=kind == "again")
                if kind == "maybe" and not raw.uncertain:  # counted once, flagged on its copy
                    raw.redelivered = raw.uncertain = True
                if tp.topic != self.queue:
                    self._wait_retry(raw)
                elif raw.redelivered and self._restamps:
                    self._spawn(self._restamp(raw))
                else:
                    fresh.append(raw)
        return fresh

    async def _mark(self, fresh: list[Raw]) -> None:
        """The hand-out mark of a whole prefetch is in the group's commit before any of it is
        handed out, so a crash from here on counts these attempts (as RabbitMQ counts a dead
        consumer's prefetch). Usually a reservation already covers them (:meth:`_reserve`): the
        hand-out itself is committed in the background, for inspection."""
        if not fresh:
            return
        for raw in fresh:
            raw.ledger.hand_out(raw.offset)
        exact = any(raw.uncertain for raw in fresh)  # see names.UNCERTAIN: committed first
        pending = self._committer is not None and not self._committer.done()
        if not exact and not self._covered(fresh) and pending and self._committer is not None:
            await asyncio.wait({self._committer})  # the reservation may be in flight
        if not exact and self._covered(fresh):
            self._ready.extend(fresh)
            self.commit_soon()
            return
        for raw in fresh:
            if (position := raw.ledger.position) is not None:
                raw.ledger.reserve(position + self.prefetch - 1, position + 2 * self.prefetch - 1)
        try:
            await self.flush()
        except BrokerError:
            self._ready.extend(fresh)
            self._unmark()  # fetched again when the partition settles
            raise
        self._ready.extend(fresh)

    @staticmethod
    def _covered(fresh: list[Raw]) -> bool:
        return all(raw.ledger.covers(raw.offset) for raw in fresh)

    def _deliver(self, count: int) -> list[Delivery]:
        out: list[Delivery] = []
        while self._ready and len(out) < count:
            raw = self._ready.popleft()
            if raw.gone:
                continue
            raw.ledger.delivered = max(raw.ledger.delivered, raw.offset)
            delivery = KafkaDelivery(self, raw)
            self.held.add(delivery)
            out.append(delivery)
        return out

    def _unmark(self) -> None:
        """Prefetched records nobody was given go back: unmarked, and read again from Kafka."""
        ready, self._ready = list(self._ready), collections.deque()
        first: dict[TopicPartition, int] = {}
        for raw in ready:
            if not raw.gone:
                raw.ledger.forget(raw.offset)
                first[raw.tp] = min(first.get(raw.tp, raw.offset), raw.offset)
        for ledger in self.ledgers.values():
            ledger.unmark()
        if self._kc is not None:
            assigned = self._kc.assignment()
            for tp, offset in first.items():
                if tp in assigned:
                    with contextlib.suppress(*DRIVER_ERRORS):
                        self._kc.seek(tp, offset)

    # -- copies: restamps, hand-backs, delayed retries -------------------------------------

    async def send_copy(
        self, queue: str, raw: Raw, *, attempts: int, headers: dict[str, str] | None = None
    ) -> None:
        """Publish ``raw`` again (same key, body and message id) with ``attempts`` stamped; to a
        delay bucket name (``<queue>.retry.<ms>``) it goes to ``<queue>.retry`` with its due time."""
        table = restamping.stamped(public_headers(raw.record) if headers is None else dict(headers), attempts)
        out = [(k, str(v).encode()) for k, v in table.items()]
        if (mid := raw.table.get(MESSAGE_ID)) is not None:
            out.append((MESSAGE_ID, bytes(mid)))
        if raw.uncertain:
            out.append((UNCERTAIN, b"1"))
        target = queue
        if (bucket := bucket_of(queue)) is not None:
            target = retry_topic(bucket[0])
            out.append((DUE, str(int(time.time() * 1000) + bucket[1]).encode()))
        await self.broker.send(target, raw.body, key=raw.record.key, headers=out)

    def hand_back(self, raw: Raw) -> None:
        """Back to the queue: a copy at its end (counting this attempt, except on a dead-letter
        queue), then the original is finished. Kafka cannot put one record back in place."""
        self._spawn(self._restamp(raw))

    async def _restamp(self, raw: Raw) -> None:
        if raw.gone:
            return
        attempts = raw.previous if self._restamps else restamping.previous(raw.table, False)
        try:
            await self.send_copy(self.queue, raw, attempts=attempts)
        except BrokerError as exc:
            log.warning("cannot hand a record of %s back (%s); retrying on the next fetch", self.queue, exc)
            self._returned.append(raw)
            return
        raw.settle(ack=True)
        with contextlib.suppress(BrokerError):
            await self.flush()

    def _retry_returned(self) -> None:
        returned, self._returned = self._returned, []
        for raw in returned:
            self._spawn(self._restamp(raw))

    def _wait_retry(self, raw: Raw) -> None:
        text = bytes(raw.table.get(DUE) or b"")[:16]
        due = int(text) if text.isdigit() else 0  # unreadable: due now
        heapq.heappush(self._waiting, (due, next(_seq), raw))
        if len(self._waiting) >= MAX_WAITING_RETRIES and self._kc is not None:
            self._kc.pause(raw.tp)

    def _move_due(self) -> None:
        now = time.time() * 1000
        while self._waiting and self._waiting[0][0] <= now:
            _, _, raw = heapq.heappop(self._waiting)
            self._spawn(self._move(raw))
        if self._kc is not None and len(self._waiting) < MAX_WAITING_RETRIES // 2:
            for tp in self._kc.paused():
                self._kc.resume(tp)

    async def _move(self, raw: Raw) -> None:
        """A delayed copy is due: into the queue (its count unchanged), then finished here."""
        if raw.gone:
            return
        try:
            await self.send_copy(self.queue, raw, attempts=restamping.previous(raw.table, False))
        except BrokerError as exc:
            log.warning("cannot move a delayed retry back to %s (%s); trying again in 1 s", self.queue, exc)
            heapq.heappush(self._waiting, (int(time.time() * 1000) + 1000, next(_seq), raw))
            return
        raw.settle(ack=True)
        with contextlib.suppress(BrokerError):
            await self.flush()

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done_task)

    def _done_task(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("background work on %s failed: %r", self.queue, exc)

    # -- commits ---------------------------------------------------------------------------

    def commit_soon(self) -> None:
        """Commit in the background: one commit in flight, taking everything finished by the
        time it starts, so jobs finishing one after the other share commits instead of queueing
        a round trip each. A crash before it lands only runs those jobs again (at least once);
        ``stats``, ``close`` and the hand-out marks wait for it."""
        self._dirty = True
        if self._committer is None or self._committer.done():
            self._committer = asyncio.ensure_future(self._commit_loop())

    async def _commit_loop(self) -> None:
        while self._dirty and not self._closed:
            self._dirty = False
            try:
                await self.flush()
            except BrokerError as exc:
                log.warning("commit on %s failed (%s); its finished jobs may run again", self.queue, exc)
                return

    async def flush(self, *, retry: bool = True) -> None:
        """Commit every partition's progress; one commit at a time, so concurrent callers share.

        A commit refused by a rebalance is tried again once the group settles (``retry``).
        """
        for attempt in range(3 if retry else 1):
            try:
                async with self._commit_lock:
                    await self._commit()
                return
            except BrokerError as exc:
                if not isinstance(exc.__cause__, CommitRefused) or attempt == 2 or not retry:
                    raise
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._assigned.wait(), self.broker.group_timeouts(self.visibility)
                                       ["session_timeout_ms"] / 1000)  # fmt: skip

    async def _commit(self) -> None:
        kc = self._kc
        if kc is None:
            return
        assignment = kc.assignment()
        proposals: dict[TopicPartition, tuple[int, str]] = {}
        for tp, ledger in self.ledgers.items():
            if tp in assignment and not ledger.lost and (p := ledger.proposal()) is not None:
                proposals[tp] = p
        if not proposals:
            return
        with mapped(f"commit on {self.queue} failed"):
            try:  # aiokafka retries some errors forever (a topic deleted under its consumer)
                await asyncio.wait_for(
                    kc.commit({tp: OffsetAndMetadata(o, m) for tp, (o, m) in proposals.items()}),
                    COMMIT_TIMEOUT,
                )
            except TimeoutError:
                raise BrokerError(f"no answer to a commit on {self.queue} within {COMMIT_TIMEOUT:.0f} s: "
                                  "its finished jobs may run again") from None  # fmt: skip
        for tp, proposal in proposals.items():
            self.ledgers[tp].confirm(proposal)

    # -- leases ----------------------------------------------------------------------------

    def done(self, delivery: LeasedDelivery[Any]) -> None:
        self.held.discard(delivery)

    def expired(self, delivery: LeasedDelivery[Any]) -> None:
        log.warning("message on %s not settled within %.1fs and no heartbeat: back to the queue",
                    self.queue, self.visibility)  # fmt: skip
        self._spawn(self._expire(delivery.raw))

    async def _expire(self, raw: Raw) -> None:
        raw.redelivered = True
        await self._restamp(raw)
        if not self._fetching and not self._closed:
            await self.pause()  # nobody pulls here: let another member have these partitions

    async def pause(self) -> None:
        """Leave the group (after committing), so its partitions go to the other members; the
        next fetch joins again. Records held here return to the queue through their next owner."""
        if self._kc is None or not self._kc.subscription():
            return
        self._unmark()
        with contextlib.suppress(BrokerError):
            await self.flush(retry=False)
        self._kc.unsubscribe()
        for tp in list(self.ledgers):
            self._drop(tp)
        self._assigned.clear()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._tasks:  # copies in progress: let them finish their originals
            await asyncio.wait(set(self._tasks), timeout=10)
        self._unmark()  # prefetched, never fetched: they count no attempt
        kc, self._kc = self._kc, None
        if kc is not None:
            with contextlib.suppress(BrokerError):
                async with self._commit_lock:
                    self._kc = kc
                    await self._commit()
                    self._kc = None
            with contextlib.suppress(*DRIVER_ERRORS):
                await kc.stop()  # leaves the group: unsettled records go to the next owner
        for delivery in list(self.held):
            delivery.lose("its consumer was closed")
        for tp in list(self.ledgers):
            self._drop(tp)
        self.broker.consumers.discard(self)
