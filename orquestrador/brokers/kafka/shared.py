"""Shared state (schedules) on Kafka: a compacted topic of records and consumer-group leases.

Records are keyed messages in ``orq.agendas``, one partition, ``cleanup.policy=compact``: Kafka
keeps the last value of each key (a tombstone removes it), so the topic is the table. Each
process folds it into memory with a reader outside any group and reads only what is new.
A lease is the one partition of ``orq.lease.<name>``: the consumer group ``orq.lease.<name>``
gives it to exactly one live member; a member that dies loses it after the session timeout
(Kafka's minimum, 6 s), and a member told of a rebalance gives it up before anyone else gets
it. The owner is recorded as ``lease.<name>`` for :meth:`holder` (the last one to take it).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import NewTopic

from orquestrador.brokers.kafka.config import group_timeouts
from orquestrador.brokers.kafka.errors import DRIVER_ERRORS, mapped
from orquestrador.brokers.shared import SharedState

RECORDS = "orq.agendas"
LEASE_TOPIC = "orq.lease."


class Client(Protocol):
    replication: int

    @property
    def producer(self) -> AIOKafkaProducer: ...

    def client_options(self) -> dict[str, Any]: ...

    async def create_topics(self, topics: list[NewTopic]) -> None: ...


class _Holding(ConsumerRebalanceListener):  # type: ignore[misc]
    """Whether this member has the lease partition now: cleared as soon as a rebalance starts."""

    def __init__(self) -> None:
        self.assigned = False

    async def on_partitions_revoked(self, revoked: Any) -> None:
        self.assigned = False

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.assigned = bool(assigned)


class KafkaState(SharedState):
    """Records in a compacted topic; leases as a group's single partition (see the module)."""

    def __init__(self, broker: Client) -> None:
        self.broker = broker
        self._reader: AIOKafkaConsumer | None = None
        self._tp = TopicPartition(RECORDS, 0)
        self._records: dict[str, bytes] = {}
        self._position = 0
        self._reading = asyncio.Lock()
        self._leases: dict[str, tuple[AIOKafkaConsumer, _Holding]] = {}

    async def _catch_up(self) -> dict[str, bytes]:
        async with self._reading:
            if self._reader is None:
                self._reader = await self._open_reader()
            with mapped(f"cannot read {RECORDS}"):
                end = (await self._reader.end_offsets([self._tp]))[self._tp]
                deadline = time.monotonic() + 10
                while self._position < end and time.monotonic() < deadline:
                    batch = await self._reader.getmany(self._tp, timeout_ms=500)
                    for record in batch.get(self._tp, []):
                        key = bytes(record.key or b"").decode()
                        if record.value is None:
                            self._records.pop(key, None)
                        else:
                            self._records[key] = bytes(record.value)
                        self._position = record.offset + 1
            return dict(self._records)

    async def _open_reader(self) -> AIOKafkaConsumer:
        compacted = NewTopic(RECORDS, 1, self.broker.replication, topic_configs={"cleanup.policy": "compact"})
        await self.broker.create_topics([compacted])
        reader = AIOKafkaConsumer(group_id=None, enable_auto_commit=False, **self.broker.client_options())
        with mapped(f"cannot read {RECORDS}"):
            await reader.start()
            reader.assign([self._tp])
            await reader.seek_to_beginning(self._tp)
        return reader

    async def _write(self, key: str, value: bytes | None) -> None:
        await self._catch_up()  # the topic exists
        with mapped(f"cannot write {key}"):
            await self.broker.producer.send_and_wait(RECORDS, value, key=key.encode())

    async def get(self, key: str) -> bytes | None:
        return (await self._catch_up()).get(key)

    async def put(self, key: str, value: bytes) -> None:
        await self._write(key, value)

    async def delete(self, key: str) -> bool:
        if await self.get(key) is None:
            return False
        await self._write(key, None)
        return True

    async def items(self, prefix: str) -> dict[str, bytes]:
        return {k: v for k, v in (await self._catch_up()).items() if k.startswith(prefix)}

    async def lease(self, name: str, owner: str, ttl: float) -> bool:
        if name not in self._leases:
            topic = LEASE_TOPIC + name
            await self.broker.create_topics([NewTopic(topic, 1, self.broker.replication)])
            holding = _Holding()
            options = {**self.broker.client_options(), **group_timeouts(ttl)}
            consumer = AIOKafkaConsumer(group_id=topic, enable_auto_commit=False, **options)
            with mapped(f"cannot join the group of the lease {name}"):
                await consumer.start()
                consumer.subscribe([topic], listener=holding)
            self._leases[name] = (consumer, holding)
        consumer, holding = self._leases[name]
        was = holding.assigned
        with mapped(f"cannot hold the lease {name}"):
            await consumer.getmany(timeout_ms=0)  # stays a live member; rebalances complete
        if holding.assigned and not was:
            await self._write(f"lease.{name}", owner.encode())
        return holding.assigned

    def still_held(self, name: str) -> bool:
        held = self._leases.get(name)
        return held is not None and held[1].assigned

    async def holder(self, name: str) -> str | None:
        owner = await self.get(f"lease.{name}")
        return owner.decode() if owner is not None else None

    async def release(self, name: str, owner: str) -> None:
        held = self._leases.pop(name, None)
        if held is not None:
            held[1].assigned = False
            with contextlib.suppress(*DRIVER_ERRORS):
                await held[0].stop()  # leaves the group: the next member gets it at once

    async def close(self) -> None:
        for name in list(self._leases):
            await self.release(name, "")
        reader, self._reader = self._reader, None
        if reader is not None:
            with contextlib.suppress(*DRIVER_ERRORS):
                await reader.stop()
