"""Topics over Kafka: every toolkit topic in one Kafka topic, ``orq.topicos``.

Why one. Kafka has no token wildcards; a Kafka topic per toolkit topic would need regex
subscriptions, which see a new topic only at the client's next metadata refresh (five minutes by
default), so a subscriber would miss the first messages of any topic born after it subscribed,
and a cluster would grow a topic per ``orq.resultado_coleta.<alvo>``. One topic is read at once
by every subscription, its records keyed by the toolkit topic (one topic's messages stay in one
partition, in order) and carrying it in the header :data:`~.names.TOPIC_HEADER`; a
subscription skips by header what its pattern does not match, without decoding, and holds the
rest to :mod:`orquestrador.topics.delivery`. The topic keeps records :data:`RETENTION_MS` (7
days): a durable subscriber away longer loses the oldest. Publishing waits for ``acks=all``.

- Live: a consumer outside any group, assigned every partition and placed at its end before
  ``subscribe_topic`` returns (the positions are read, not left to the first fetch), so nothing
  published afterwards is missed.
- Durable (``durable=NAME``): the consumer group ``orq.topico.NAME`` (no job queue's group can be
  named so: queue names hold no dots). A group new to the topic starts at its end, and that
  position is committed before ``subscribe_topic`` returns, so what is published while the
  subscriber is away stays for it. Records are delivered one at a time in each partition and
  committed after :func:`~orquestrador.topics.delivery.deliver_durable` is done with them;
  processes sharing a name share the partitions. ``delete_subscription`` deletes the group
  (Kafka refuses while a member is subscribed).

The consumers reconnect by themselves (aiokafka), silently: a watch asks the cluster every few
seconds while subscriptions exist and logs when it stops answering and when it is back; a read
that fails is logged and retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine, Sequence
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.protocol.admin import DeleteGroupsRequest

from orquestrador.brokers.base import TopicCallback, Unsubscribe
from orquestrador.brokers.kafka.consumer import Host as ConsumerHost
from orquestrador.brokers.kafka.errors import DRIVER_ERRORS, CommitRefused, mapped
from orquestrador.brokers.kafka.events import Reads, tail
from orquestrador.brokers.kafka.ledger import Committed
from orquestrador.brokers.kafka.names import TOPIC_HEADER, TOPICS_TOPIC, durable_group
from orquestrador.errors import BrokerError, TopicError
from orquestrador.topics import delivery
from orquestrador.topics.patterns import matches

log = logging.getLogger(__name__)

RETENTION_MS = 7 * 24 * 3600 * 1000
SESSION = 10.0  # seconds before a durable member that vanished loses its partitions
ASSIGNMENT_WAIT = 30.0
WATCH = 5.0  # seconds between checks that the cluster answers, while there are subscriptions
_GROUP_NOT_FOUND, _GROUP_NOT_EMPTY = 69, 68  # Kafka's error codes for DeleteGroups


class Host(ConsumerHost, Reads, Protocol):
    """What topics need of their broker: what consumers and event readers need, and more."""

    partitions: int
    replication: int

    @property
    def admin(self) -> AIOKafkaAdminClient: ...

    @property
    def producer(self) -> AIOKafkaProducer: ...

    async def create_topics(self, topics: list[NewTopic]) -> None: ...


class KafkaTopics:
    """The topics of one broker connection (see the module docstring)."""

    def __init__(self, broker: Host) -> None:
        self.broker = broker
        self._created = False
        self._subscriptions: set[Unsubscribe] = set()
        self._watch: asyncio.Task[None] | None = None

    async def ensure(self) -> None:
        if not self._created:
            config = {"retention.ms": str(RETENTION_MS)}
            topic = NewTopic(
                TOPICS_TOPIC, self.broker.partitions, self.broker.replication, topic_configs=config
            )
            await self.broker.create_topics([topic])
            self._created = True

    async def publish(self, topic: str, body: bytes) -> None:
        await self.ensure()
        await self.broker.send(
            TOPICS_TOPIC, body, key=topic.encode(), headers=[(TOPIC_HEADER, topic.encode())]
        )

    async def publish_many(self, items: Sequence[tuple[str, bytes]]) -> int:
        """Every record handed to the producer at once (it batches them per partition), then each
        acknowledgement awaited; returns how many failed (logged once, at debug: the toolkit's
        own topics are best effort)."""
        try:
            await self.ensure()
            producer = self.broker.producer
        except BrokerError as exc:
            log.debug("%d topic messages not sent: %s", len(items), exc)
            return len(items)
        failed = 0
        first: BaseException | None = None
        sent = []
        for topic, body in items:
            try:
                with mapped(f"topic message on {topic} not sent"):
                    key = topic.encode()
                    sent.append(
                        await producer.send(TOPICS_TOPIC, bytes(body), key=key, headers=[(TOPIC_HEADER, key)])
                    )
            except BrokerError as exc:
                failed, first = failed + 1, first or exc
        for outcome in await asyncio.gather(*sent, return_exceptions=True):
            if isinstance(outcome, BaseException):
                failed, first = failed + 1, first or outcome
        if first is not None:
            log.debug("%d of %d topic messages not sent: %s", failed, len(items), first)
        return failed

    async def subscribe(self, pattern: str, callback: TopicCallback, *, durable: str | None) -> Unsubscribe:
        await self.ensure()
        if durable is None:
            reader = await tail(self.broker, TOPICS_TOPIC, f"cannot subscribe to topics {pattern}")
            end = await self._run(
                reader, _Live(reader, pattern, callback).pump(), f"live subscription {pattern}"
            )
        else:
            member = _Durable(self.broker, pattern, callback, durable)
            await member.start()
            end = await self._run(member.consumer, member.pump(), f"durable subscription {durable!r}",
                                  member)  # fmt: skip
        return end

    async def _run(
        self, consumer: AIOKafkaConsumer, pump: Coroutine[Any, Any, None], what: str,
        member: _Durable | None = None,
    ) -> Unsubscribe:  # fmt: skip
        task = delivery.watched(pump, what)
        if self._watch is None:
            self._watch = delivery.watched(self._watching(), "the Kafka topics watch")

        async def unsubscribe() -> None:
            self._subscriptions.discard(unsubscribe)
            await delivery.stop(task, member.gate if member is not None else None)
            with contextlib.suppress(*DRIVER_ERRORS):
                await consumer.stop()
            if not self._subscriptions and self._watch is not None:
                watch, self._watch = self._watch, None
                await delivery.stop(watch)

        self._subscriptions.add(unsubscribe)
        return unsubscribe

    async def _watching(self) -> None:
        """aiokafka's readers wait out an outage in silence: while subscriptions exist, ask the
        cluster every :data:`WATCH` seconds and say when it stops answering, and when it is back."""
        down = False
        while True:
            await asyncio.sleep(WATCH)
            try:
                with mapped("Kafka does not answer"):
                    await asyncio.wait_for(self.broker.admin.describe_cluster(), WATCH)
            except (BrokerError, TimeoutError) as exc:
                if not down:
                    log.warning("topic subscriptions receive nothing (%s); they resume by themselves "
                                "when it answers again", exc or "Kafka does not answer")  # fmt: skip
                down = True
                continue
            if down:
                log.warning("Kafka answers again: topic subscriptions receive again")
                down = False

    async def delete_subscription(self, durable: str) -> None:
        group = durable_group(durable)
        admin = self.broker.admin
        with mapped(f"cannot delete durable subscription {durable!r}"):
            coordinator = await admin.find_coordinator(group)
            # aiokafka's admin has no DeleteGroups call: the request its own calls would send.
            reply = await admin._client.send(coordinator, DeleteGroupsRequest([group]))
        for _group, code in reply.results:
            if code == _GROUP_NOT_EMPTY:
                raise TopicError(
                    f"durable subscription {durable!r} is in use: unsubscribe it everywhere first"
                )
            if code and code != _GROUP_NOT_FOUND:
                raise BrokerError(f"cannot delete durable subscription {durable!r}: Kafka error {code}")

    async def close(self) -> None:
        for unsubscribe in list(self._subscriptions):
            await unsubscribe()


def _wanted(pattern: str, record: Any) -> bool:
    """False if the record's topic header says ``pattern`` does not match (the body is then not
    even decoded); records without one are judged by their body."""
    sent = dict(record.headers or ()).get(TOPIC_HEADER)
    return sent is None or matches(pattern, sent.decode("utf-8", "replace"))


async def _read(
    consumer: AIOKafkaConsumer, what: str, failures: list[int]
) -> dict[TopicPartition, list[Any]]:
    """One fetch; a failure is logged (the first, the tenth, then every hundredth) and waited out."""
    try:
        batch: dict[TopicPartition, list[Any]] = await consumer.getmany(timeout_ms=500)
    except DRIVER_ERRORS as exc:
        failures[0] += 1
        if failures[0] in (1, 10) or failures[0] % 100 == 0:
            log.warning("%s: reading %s failed (%s); retrying", what, TOPICS_TOPIC, exc)
        await asyncio.sleep(min(5.0, 0.2 * failures[0]))
        return {}
    failures[0] = 0
    return batch


class _Live:
    def __init__(self, reader: AIOKafkaConsumer, pattern: str, callback: TopicCallback) -> None:
        self.reader, self.pattern, self.callback = reader, pattern, callback

    async def pump(self) -> None:
        failures = [0]
        while True:
            batch = await _read(self.reader, f"live subscription {self.pattern}", failures)
            for records in batch.values():
                for record in records:
                    if _wanted(self.pattern, record):
                        await delivery.deliver_live(self.pattern, bytes(record.value or b""), self.callback)


class _Assigned(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self) -> None:
        self.changed = asyncio.Event()

    async def on_partitions_revoked(self, revoked: Any) -> None:
        pass

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.changed.set()


class _Durable:
    """One member of a durable subscription's group."""

    def __init__(self, broker: Host, pattern: str, callback: TopicCallback, durable: str) -> None:
        self.broker, self.pattern, self.callback, self.durable = broker, pattern, callback, durable
        self.group = durable_group(durable)
        self.where = f"durable subscription {durable!r}"
        self.listener = _Assigned()
        self.consumer = AIOKafkaConsumer(
            group_id=self.group, enable_auto_commit=False, auto_offset_reset="earliest",
            **broker.group_timeouts(SESSION), **broker.client_options(),
        )  # fmt: skip
        self.gate = delivery.Gate()  # unsubscribing waits for the record under way, and its commit

    async def start(self) -> None:
        """Joined, assigned, and the start of every partition pinned by a commit."""
        with mapped(f"cannot subscribe {self.where}"):
            await self.consumer.start()
        try:
            self.consumer.subscribe([TOPICS_TOPIC], listener=self.listener)
            try:
                await asyncio.wait_for(self.listener.changed.wait(), ASSIGNMENT_WAIT)
            except TimeoutError:
                waited = f"{self.where}: the group {self.group} assigned nothing in {ASSIGNMENT_WAIT:.0f} s"
                raise BrokerError(f"{waited}; is the Kafka cluster healthy?") from None
            await self.pin()
        except BaseException:
            with contextlib.suppress(*DRIVER_ERRORS):
                await self.consumer.stop()
            raise

    async def pin(self) -> None:
        """Commit the end of each assigned partition the group has no commit for, so a member
        that goes away keeps its place. (``auto_offset_reset`` is for a commit past retention:
        the oldest record kept is the best that is left.)"""
        self.listener.changed.clear()
        assigned = list(self.consumer.assignment())
        if not assigned:
            return
        committed = await self.broker.committed(self.group, assigned)
        fresh = [tp for tp in assigned if committed.get(tp, Committed(None)).offset is None]
        if fresh:
            with mapped(f"cannot fix where {self.where} starts"):
                await self.consumer.seek_to_end(*fresh)
                positions = {tp: await self.consumer.position(tp) for tp in fresh}
                await self.consumer.commit(positions)

    async def pump(self) -> None:
        failures = [0]
        while not self.gate.stopping:
            if self.listener.changed.is_set():
                try:
                    await self.pin()
                except BrokerError as exc:
                    log.warning("%s: %s", self.where, exc)
            batch = await _read(self.consumer, self.where, failures)
            for tp, records in batch.items():
                for record in records:
                    if self.gate.stopping or tp not in self.consumer.assignment():
                        break  # the rest come again, from the commit, to whoever reads next
                    async with self.gate.delivery():
                        await self._deliver(tp, record)

    async def _deliver(self, tp: TopicPartition, record: Any) -> None:
        if _wanted(self.pattern, record):
            body = bytes(record.value or b"")
            await delivery.deliver_durable(self.pattern, body, self.callback, self.durable)
        try:
            with mapped(f"{self.where}: commit failed"):
                await self.consumer.commit({tp: record.offset + 1})
        except (BrokerError, *CommitRefused) as exc:  # the partition moved: its new owner redelivers
            log.warning("%s (the record at %s:%d may come again)", exc, tp.partition, record.offset)
