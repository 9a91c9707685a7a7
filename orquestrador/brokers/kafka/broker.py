"""The Kafka broker: the clients, publishing, topics, inspection and events (see
:mod:`orquestrador.brokers.kafka` for the mapping)."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic, RecordsToDelete

from orquestrador.brokers.base import (
    DLQ_SUFFIX,
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
from orquestrador.brokers.kafka.config import KafkaConfig, group_timeouts, quiet_driver
from orquestrador.brokers.kafka.consumer import KafkaConsumer
from orquestrador.brokers.kafka.delivery import public_headers
from orquestrador.brokers.kafka.errors import DRIVER_ERRORS, TopicExists, mapped, retried, unreachable
from orquestrador.brokers.kafka.events import EventsTopic
from orquestrador.brokers.kafka.ledger import Committed
from orquestrador.brokers.kafka.names import MESSAGE_ID, RETRY_SUFFIX, group_of, key_of, retry_topic
from orquestrador.brokers.kafka.shared import KafkaState
from orquestrador.brokers.kafka.topics import KafkaTopics
from orquestrador.brokers.shared import SharedState
from orquestrador.brokers.support.delays import bucket_name
from orquestrador.brokers.support.limits import DlqLimits
from orquestrador.errors import BrokerError
from orquestrador.settings import redact_url

log = logging.getLogger(__name__)


class KafkaBroker(Broker):
    """Clients of one Kafka cluster (``kafka://`` or ``kafkas://``); see the module docstring."""

    scheme = "kafka"
    display_name = "Kafka"
    # What Kafka lacks, this adapter supplies (see the package docstring).
    capabilities = Capabilities.lacking(
        "server_dedup", "delivery_count", "server_lease", "delayed_redelivery", "shared_slots",
        "oldest_age", "counts_reconnects",
    )  # fmt: skip

    def __init__(self, url: str, *, connect_timeout: float = 10.0) -> None:
        super().__init__(url)
        config = KafkaConfig.from_url(self.plain_url, redact_url(url), self.tls)
        self.partitions, self._replication = config.partitions, config.replication
        self.replication = self._replication or 1
        self._options = config.options
        self.connect_timeout = connect_timeout
        self.dlq = DlqLimits.from_env()
        self.consumers: set[KafkaConsumer] = set()
        self._producer: AIOKafkaProducer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._inspector: AIOKafkaConsumer | None = None
        self._inspecting = asyncio.Lock()
        self._partitions: dict[str, tuple[float, list[int]]] = {}
        self._events = EventsTopic(self)
        self._state: KafkaState | None = None
        self._pubsub = KafkaTopics(self)

    def client_options(self) -> dict[str, Any]:
        """Connection settings shared by every aiokafka client of this broker (credentials too:
        never logged)."""
        return dict(self._options)

    def group_timeouts(self, visibility: float) -> dict[str, int]:
        return group_timeouts(visibility)

    @property
    def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise self.not_connected()
        return self._producer

    @property
    def admin(self) -> AIOKafkaAdminClient:
        if self._admin is None:
            raise self.not_connected()
        return self._admin

    # -- connection ------------------------------------------------------------------------

    async def connect(self) -> None:
        if self._producer is not None:
            return
        quiet_driver()
        options = self.client_options()
        producer = AIOKafkaProducer(acks="all", enable_idempotence=True, max_batch_size=1 << 20, **options)
        admin = AIOKafkaAdminClient(**{k: v for k, v in options.items() if k != "client_id"})
        inspector = AIOKafkaConsumer(group_id=None, enable_auto_commit=False, **options)
        try:
            for client in (producer, admin, inspector):
                await asyncio.wait_for(client.start(), self.connect_timeout)
        except (*DRIVER_ERRORS, TimeoutError) as exc:
            for client in (producer, admin, inspector):  # started or not: each holds a loop handle
                with contextlib.suppress(*DRIVER_ERRORS, RuntimeError):
                    await (client.close() if client is admin else client.stop())
            refused = await self._tls_refusal() if self.tls is not None else None
            raise unreachable(refused or exc, redact_url(self.url)) from None
        self._producer, self._admin, self._inspector = producer, admin, inspector
        if not self._replication:  # as many copies as the cluster allows, up to three
            with contextlib.suppress(BrokerError):
                with mapped("cannot describe the Kafka cluster"):
                    cluster = await admin.describe_cluster()
                self.replication = max(1, min(3, len(cluster.get("brokers", []))))

    async def _tls_refusal(self) -> ssl.SSLError | None:
        """aiokafka reports a refused TLS handshake as "unable to bootstrap": shake hands with the
        first server ourselves to tell the user which TLS setting to fix."""
        host, _, port = str(self._options["bootstrap_servers"][0]).rpartition(":")
        host = host.strip("[]")
        context = self._options["ssl_context"]
        try:
            opening = asyncio.open_connection(host, int(port), ssl=context, server_hostname=host)
            _reader, writer = await asyncio.wait_for(opening, 5)
        except ssl.SSLError as exc:
            return exc
        except (OSError, ValueError, TimeoutError):
            return None
        writer.close()
        return None

    def shared_state(self) -> SharedState:
        if self._state is None:
            self._state = KafkaState(self)
        return self._state

    async def close(self) -> None:
        if self._state is not None:
            state, self._state = self._state, None
            await state.close()
        for consumer in list(self.consumers):
            with contextlib.suppress(BrokerError, TimeoutError):
                await asyncio.wait_for(consumer.close(), 15)
        await self._events.close()
        await self._pubsub.close()
        producer, admin, inspector = self._producer, self._admin, self._inspector
        self._producer = self._admin = self._inspector = None
        with contextlib.suppress(*DRIVER_ERRORS):
            if producer is not None:
                await producer.stop()
            if inspector is not None:
                await inspector.stop()
            if admin is not None:
                await admin.close()

    # -- topics ----------------------------------------------------------------------------

    async def _declare_new(self, names: list[str]) -> None:
        """The topics of ``names``: a job queue also gets ``<queue>.retry``; a dead-letter queue
        has one partition (its order is replay's) and ``ORQ_DLQ_MAX_AGE`` as retention."""
        topics: list[NewTopic] = []
        for name in names:
            if name.endswith(DLQ_SUFFIX):
                config = {"retention.ms": str(int(self.dlq.max_age * 1000))} if self.dlq.max_age else {}
                topics.append(NewTopic(name, 1, self.replication, topic_configs=config))
            else:
                topics.append(NewTopic(name, self.partitions, self.replication))
                topics.append(NewTopic(retry_topic(name), 1, self.replication))
        await self.create_topics(topics)

    async def create_topics(self, topics: list[NewTopic]) -> None:
        with mapped(f"cannot create topics {', '.join(t.name for t in topics)}"):
            response = await self.admin.create_topics(topics)
        for topic, code, *rest in getattr(response, "topic_errors", []) or getattr(response, "topics", []):
            if code and code != TopicExists.errno:
                message = next((r for r in rest if isinstance(r, str) and r), "")
                raise BrokerError(f"cannot create topic {topic}: Kafka error {code} {message}".strip())
        await self._leaders([t.name for t in topics])

    async def _leaders(self, names: list[str], wait: float = 10.0) -> None:
        """Until every partition of ``names`` has a leader: a new topic takes a moment to get
        them, and clients that meet it leaderless log errors and back off."""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            with mapped(f"cannot describe topics {', '.join(names)}"):
                infos = await self.admin.describe_topics(names)
            partitions = [p for info in infos for p in info.get("partitions", [])]
            led = bool(partitions) and all(p.get("leader", -1) >= 0 for p in partitions)
            if led and len(infos) == len(names) and not any(info.get("error_code") for info in infos):
                return
            await asyncio.sleep(0.05)

    async def retry_bucket(self, queue: str, delay: float) -> str:
        """A delay bucket here is a name only: its copies all go to ``<queue>.retry``, with their
        due time in a header (see the package docstring)."""
        await self.declare(queue)
        return bucket_name(queue, delay)

    async def partitions_of(self, topic: str) -> list[int]:
        cached = self._partitions.get(topic)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        found: list[int] = []
        for _ in range(50):  # a topic just created may show no partitions for a moment on a cluster
            with mapped(f"cannot describe topic {topic}"):
                [info] = await self.admin.describe_topics([topic])
            found = sorted(int(p["partition"]) for p in info.get("partitions", []))
            if found:
                self._partitions[topic] = (time.monotonic() + 30.0, found)
                break
            await asyncio.sleep(0.2)
        return found

    async def _tps(self, topic: str) -> list[TopicPartition]:
        return [TopicPartition(topic, p) for p in await self.partitions_of(topic)]

    # -- publishing ------------------------------------------------------------------------

    async def send(
        self, topic: str, body: bytes, *, key: bytes | None, headers: list[tuple[str, bytes]]
    ) -> None:
        """Produce and wait for the acknowledgement of every in-sync replica (``acks=all``)."""
        with mapped(f"publish to {topic} failed"):
            await self.producer.send_and_wait(topic, bytes(body), key=key, headers=headers or None)

    async def publish(
        self,
        queue: str,
        body: bytes,
        *,
        message_id: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        await self.declare(queue)
        out = [(k, v.encode()) for k, v in (headers or {}).items()]
        if message_id:
            out.append((MESSAGE_ID, message_id.encode()))

        async def send() -> None:
            await self.send(queue, body, key=key_of(body), headers=out)

        await self.deduplicated(queue, message_id, send)  # no server-side dedup: support.dedup

    # -- consuming -------------------------------------------------------------------------

    async def consume(self, queue: str, *, visibility_timeout: float = 30.0, prefetch: int = 16) -> Consumer:
        consumer = KafkaConsumer(self, queue, visibility_timeout, prefetch)
        self.consumers.add(consumer)
        try:
            await consumer.start()
        except BaseException:
            await consumer.close()
            raise
        return consumer

    async def committed(
        self, group: str, partitions: list[TopicPartition]
    ) -> dict[TopicPartition, Committed]:
        """The group's commits (offset and metadata) for ``partitions``."""
        admin = self.admin
        found = await retried(lambda: admin.list_consumer_group_offsets(group, partitions=partitions),
                              f"cannot read the offsets of {group}")  # fmt: skip
        return {
            tp: Committed(o.offset if o.offset >= 0 else None, o.metadata or "") for tp, o in found.items()
        }

    async def _own_writes(self, queue: str) -> None:
        """Commits of this process's consumers first: a process reads its own acks."""
        for consumer in list(self.consumers):
            if consumer.queue == queue:
                with contextlib.suppress(BrokerError):
                    await consumer.flush(retry=False)

    # -- inspection ------------------------------------------------------------------------

    async def _offsets(self, topic: str, group: str) -> list[tuple[TopicPartition, int, int, Committed]]:
        """Per partition: log start, end, and the group's commit."""
        tps = await self._tps(topic)
        if not tps:
            return []
        inspector = self._inspector
        if inspector is None:
            raise self.not_connected()
        with mapped(f"cannot read the offsets of {topic}"):
            begins = await inspector.beginning_offsets(tps)
            ends = await inspector.end_offsets(tps)
        committed = await self.committed(group, tps)
        return [(tp, begins[tp], ends[tp], committed.get(tp, Committed(None))) for tp in tps]

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        """Where each partition's log ends now: the offset its next record gets."""
        inspector = self._inspector
        if inspector is None:
            raise self.not_connected()
        with mapped("cannot read where the partitions end"):
            return dict(await inspector.end_offsets(partitions))

    async def _lag(self, topic: str, group: str) -> tuple[int, int]:
        """(waiting, in flight) of ``group`` on ``topic``, from the commits (every consumer's)."""
        waiting = held = 0
        for _tp, begin, end, commit in await self._offsets(topic, group):
            start = max(begin, commit.offset if commit.offset is not None else begin)
            last = min(end - 1, commit.held)
            handed = max(0, last - start + 1)
            waiting += max(0, end - start - handed)
            held += max(0, handed - sum(1 for o in commit.finished if start <= o <= last))
        return waiting, held

    async def stats(self, queue: str) -> QueueStats:
        await self.declare(queue)
        await self._own_writes(queue)
        depth, held = await self._lag(queue, group_of(queue))
        dead = 0
        if not queue.endswith(DLQ_SUFFIX):
            await self._own_writes(dlq_of(queue))
            await self.trim_dead_letters(dlq_of(queue))
            dead = sum(await self._lag(dlq_of(queue), group_of(dlq_of(queue))))
        return QueueStats(queue=queue, depth=depth, in_flight=held, dead_letters=dead,
                          consumers=await self._members(group_of(queue)))  # fmt: skip

    async def _members(self, group: str) -> int | None:
        try:
            with mapped(f"cannot describe group {group}"):
                [response] = await self.admin.describe_consumer_groups([group])
        except BrokerError as exc:
            log.debug("%s", exc)
            return None
        groups = getattr(response, "groups", [])
        return len(groups[0][5]) if groups and len(groups[0]) > 5 else 0

    async def dead_letter_snapshot(self, queue: str) -> tuple[int, tuple[int, ...] | None]:
        dlq = dlq_of(queue)
        await self.declare(queue)
        await self._own_writes(dlq)
        await self.trim_dead_letters(dlq)
        count = sum(await self._lag(dlq, group_of(dlq)))
        offsets = await self._offsets(dlq, group_of(dlq))
        last = (offsets[0][2] - 1,) if len(offsets) == 1 else None
        return count, last

    async def trim_dead_letters(self, dlq: str) -> None:
        """Apply ``ORQ_DLQ_MAX_MESSAGES`` / ``ORQ_DLQ_MAX_AGE`` to ``dlq`` now: records past them
        are deleted (DeleteRecords). Done at each dead-letter write and before each read, since
        Kafka's own ``retention.ms`` acts only when a log segment rolls (minutes to days)."""
        limits = self.dlq
        if not (limits.max_messages or limits.max_age) or not dlq.endswith(DLQ_SUFFIX):
            return
        inspector = self._inspector
        if inspector is None:
            raise self.not_connected()
        cuts: dict[TopicPartition, RecordsToDelete] = {}
        for tp in await self._tps(dlq):
            with mapped(f"cannot trim {dlq}"):
                begin = (await inspector.beginning_offsets([tp]))[tp]
                end = (await inspector.end_offsets([tp]))[tp]
                cut = end - limits.max_messages if limits.max_messages else begin
                if limits.max_age:
                    since = int((time.time() - limits.max_age) * 1000)
                    found = (await inspector.offsets_for_times({tp: since}))[tp]
                    cut = max(cut, found.offset if found is not None else end)
            if cut > begin:
                cuts[tp] = RecordsToDelete(cut)
        if cuts:
            with mapped(f"cannot trim {dlq}"):
                await self.admin.delete_records(cuts)

    async def peek(self, queue: str, limit: int = 10) -> list[Message]:
        """The oldest records the group has not finished, read by a client outside the group."""
        await self.declare(queue)
        await self._own_writes(queue)
        await self.trim_dead_letters(queue)
        found: list[tuple[int, int, int, Message]] = []
        inspector = self._inspector
        if inspector is None:
            raise self.not_connected()
        async with self._inspecting:
            for tp, begin, end, commit in await self._offsets(queue, group_of(queue)):
                start = max(begin, commit.offset if commit.offset is not None else begin)
                skip = commit.finished
                for record in await self._read(inspector, tp, start, min(end, start + limit + len(skip))):
                    if record.offset not in skip:
                        message = Message(
                            bytes(record.value or b""),
                            public_headers(record),
                            f"{tp.partition}:{record.offset}",
                        )
                        found.append((record.timestamp, tp.partition, record.offset, message))
        return [m for *_, m in heapq.nsmallest(limit, found, key=lambda f: f[:3])]

    async def _read(self, inspector: AIOKafkaConsumer, tp: TopicPartition, start: int, end: int) -> list[Any]:
        if start >= end:
            return []
        out: list[Any] = []
        with mapped(f"cannot read {tp.topic}"):
            inspector.assign([tp])
            inspector.seek(tp, start)
            deadline = time.monotonic() + 10
            while len(out) < end - start and time.monotonic() < deadline:
                batch = await inspector.getmany(tp, timeout_ms=500, max_records=end - start - len(out))
                out += [r for r in batch.get(tp, []) if r.offset < end]
                if out and out[-1].offset >= end - 1:
                    break
        return out

    async def purge(self, queue: str) -> int:
        """Delete the records of ``queue`` up to its end (Kafka's DeleteRecords); returns how
        many were waiting, in flight ones excluded."""
        await self.declare(queue)
        await self._own_writes(queue)
        waiting, _held = await self._lag(queue, group_of(queue))
        ends = {tp: RecordsToDelete(end) for tp, _b, end, _c in await self._offsets(queue, group_of(queue))}
        if ends:
            with mapped(f"cannot purge {queue}"):
                await self.admin.delete_records(ends)
        return waiting

    async def delete(self, queue: str) -> None:
        validate_queue_name(queue)
        names = (
            [queue, dlq_of(queue)]
            if queue.endswith(DLQ_SUFFIX)
            else [queue, retry_topic(queue), dlq_of(queue)]
        )
        existing = set(await self._topics())
        gone = [name for name in dict.fromkeys(names) if name in existing]
        if gone:
            with mapped(f"cannot delete {queue}"):
                await self.admin.delete_topics(gone)
            deadline = time.monotonic() + 30  # deletion is asynchronous: a new topic of the
            while time.monotonic() < deadline and set(gone) & set(await self._topics()):  # same
                await asyncio.sleep(0.1)  # name made meanwhile would be the old one, going away
        for name in names:
            self.forget(name)
            self.forget_ids(name)
            self._partitions.pop(name, None)

    async def _topics(self) -> list[str]:
        with mapped("cannot list topics"):
            return list(await self.admin.list_topics())

    async def queues(self) -> list[str]:
        """Topics this toolkit declared: a queue has its ``.retry`` topic beside it."""
        topics = set(await self._topics())
        names = {t[: -len(RETRY_SUFFIX)] for t in topics if t.endswith(RETRY_SUFFIX)}
        queues = {n for n in names if n in topics}
        return sorted(queues | {dlq_of(n) for n in queues if dlq_of(n) in topics})

    # -- events ----------------------------------------------------------------------------

    async def publish_event(self, subject: str, body: bytes) -> None:
        if self._producer is not None:
            await self._events.publish(subject, body)

    async def subscribe_events(self, subject: str, callback: EventCallback) -> Callable[[], Awaitable[None]]:
        return await self._events.subscribe(subject, callback)

    # -- topics (see .topics) ----------------------------------------------------------------

    async def publish_topic(self, topic: str, body: bytes) -> None:
        await self._pubsub.publish(topic, body)

    async def publish_topics(self, items: Sequence[tuple[str, bytes]]) -> int:
        return await self._pubsub.publish_many(items)

    async def subscribe_topic(
        self, pattern: str, callback: TopicCallback, *, durable: str | None = None
    ) -> Unsubscribe:
        return await self._pubsub.subscribe(pattern, callback, durable=durable)

    async def delete_subscription(self, durable: str) -> None:
        """Its consumer group goes, with its place in ``orq.topicos``."""
        await self._pubsub.delete_subscription(durable)


__all__ = ["KafkaBroker"]
