"""Lifecycle events over Kafka: one topic, ``orq.eventos``, keyed by ``correlation_id``.

Every event of a chain lands in one partition, in order, so other services can consume a chain's
story with an ordinary consumer group. The subject (``orq.eventos``…) travels in a header; a
subscription reads every partition from its end, outside any group, and keeps the subjects its
NATS-style pattern matches (``*`` one token, ``>`` the rest). Publishing does not wait for the
broker's acknowledgement: events are best effort, the four envelope types are the contract.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import NewTopic

from orquestrador.brokers.base import EventCallback
from orquestrador.brokers.kafka.errors import DRIVER_ERRORS, mapped
from orquestrador.brokers.kafka.names import EVENTS_TOPIC, SUBJECT, key_of
from orquestrador.errors import BrokerError
from orquestrador.topics.patterns import matches

log = logging.getLogger(__name__)


class Host(Protocol):
    partitions: int
    replication: int

    @property
    def producer(self) -> AIOKafkaProducer: ...

    def client_options(self) -> dict[str, Any]: ...

    async def create_topics(self, topics: list[NewTopic]) -> None: ...

    async def partitions_of(self, topic: str) -> list[int]: ...


class Reads(Protocol):
    def client_options(self) -> dict[str, Any]: ...

    async def partitions_of(self, topic: str) -> list[int]: ...


async def tail(broker: Reads, topic: str, what: str) -> AIOKafkaConsumer:
    """A started reader of every partition of ``topic``, outside any group, at its end as of
    now: the positions are read before this returns, so nothing sent afterwards is missed."""
    reader = AIOKafkaConsumer(group_id=None, enable_auto_commit=False, **broker.client_options())
    try:
        with mapped(what):
            await reader.start()
            tps = [TopicPartition(topic, p) for p in await broker.partitions_of(topic)]
            if not tps:
                raise BrokerError(f"{what}: the topic {topic} shows no partitions yet; subscribe again")
            reader.assign(tps)
            await reader.seek_to_end(*tps)
            for tp in tps:
                await reader.position(tp)
    except BaseException:
        with contextlib.suppress(*DRIVER_ERRORS):
            await reader.stop()
        raise
    return reader


class EventsTopic:
    def __init__(self, broker: Host) -> None:
        self.broker = broker
        self._created = False
        self._subscriptions: set[Callable[[], Awaitable[None]]] = set()

    async def _ensure(self) -> None:
        if not self._created:
            await self.broker.create_topics(
                [NewTopic(EVENTS_TOPIC, self.broker.partitions, self.broker.replication)]
            )
            self._created = True

    async def publish(self, subject: str, body: bytes) -> None:
        try:
            await self._ensure()
            with mapped(f"event on {subject} not sent"):
                await self.broker.producer.send(EVENTS_TOPIC, bytes(body), key=key_of(body),
                                                headers=[(SUBJECT, subject.encode())])  # fmt: skip
        except BrokerError as exc:
            log.debug("%s", exc)

    async def subscribe(self, subject: str, callback: EventCallback) -> Callable[[], Awaitable[None]]:
        await self._ensure()
        reader = await tail(self.broker, EVENTS_TOPIC, f"cannot subscribe to events {subject}")

        async def pump() -> None:
            while True:
                try:
                    batch = await reader.getmany(timeout_ms=1000)
                except DRIVER_ERRORS as exc:
                    log.debug("events of %s not read: %s", subject, exc)
                    await asyncio.sleep(1)
                    continue
                for records in batch.values():
                    for record in records:
                        topic = dict(record.headers or ()).get(SUBJECT, b"").decode("utf-8", "replace")
                        if matches(subject, topic):
                            await _call(callback, bytes(record.value or b""), subject)

        task = asyncio.ensure_future(pump())

        async def unsubscribe() -> None:
            self._subscriptions.discard(unsubscribe)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            with contextlib.suppress(*DRIVER_ERRORS):
                await reader.stop()

        self._subscriptions.add(unsubscribe)
        return unsubscribe

    async def close(self) -> None:
        for unsubscribe in list(self._subscriptions):
            await unsubscribe()


async def _call(callback: EventCallback, body: bytes, subject: str) -> None:
    try:
        result = callback(body)
        if asyncio.iscoroutine(result):
            await result
    except Exception:
        log.exception("event callback for %s failed", subject)
