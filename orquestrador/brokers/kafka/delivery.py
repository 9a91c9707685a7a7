"""A record handed to a handler: :class:`Raw` (what the consumer fetched, settled through its
ledger) and :class:`KafkaDelivery` (the record under a client-side lease, :mod:`..support.lease`).
"""

from __future__ import annotations

from typing import Any, Protocol

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from orquestrador.brokers.base import dlq_of
from orquestrador.brokers.intake import FieldReader
from orquestrador.brokers.kafka.ledger import Ledger
from orquestrador.brokers.kafka.names import MESSAGE_ID, UNCERTAIN
from orquestrador.brokers.support import attempts as restamping
from orquestrador.brokers.support.lease import LeasedDelivery


class Broker(Protocol):
    async def retry_bucket(self, queue: str, delay: float) -> str: ...

    async def trim_dead_letters(self, dlq: str) -> None: ...


class Owner(Protocol):
    """What records and deliveries need of the consumer they came from (never imported here)."""

    @property
    def broker(self) -> Broker: ...

    @property
    def queue(self) -> str: ...

    @property
    def visibility(self) -> float: ...

    @property
    def single_partition(self) -> bool: ...

    def done(self, delivery: LeasedDelivery[Any]) -> None: ...

    def expired(self, delivery: LeasedDelivery[Any]) -> None: ...

    async def send_copy(
        self, queue: str, raw: Raw, *, attempts: int, headers: dict[str, str] | None = None
    ) -> None: ...

    def hand_back(self, raw: Raw) -> None: ...

    def commit_soon(self) -> None: ...


def record_headers(record: ConsumerRecord[Any, Any]) -> dict[str, Any]:
    return {str(k): v for k, v in (record.headers or ())}


def public_headers(record: ConsumerRecord[Any, Any], reader: FieldReader | None = None) -> dict[str, str]:
    """The application's headers, as text; ``x-`` ones belong to this adapter."""
    return (reader or FieldReader()).headers(record.headers or (), "Kafka headers", skip=("x-",))


class Raw:
    """A record this consumer fetched and has not finished (a :class:`~.support.attempts.Raw`)."""

    def __init__(
        self, consumer: Owner, tp: TopicPartition, record: ConsumerRecord[Any, Any], ledger: Ledger,
        redelivered: bool,
    ) -> None:  # fmt: skip
        self.consumer, self.tp, self.record, self.ledger = consumer, tp, record, ledger
        self.offset: int = record.offset
        self.table = record_headers(record)
        self.redelivered = redelivered
        # Its attempt was counted once on an earlier owner's reservation (names.UNCERTAIN).
        self.uncertain = UNCERTAIN in self.table

    @property
    def body(self) -> bytes:
        return bytes(self.record.value or b"")

    @property
    def previous(self) -> int:
        return restamping.previous(self.table, self.redelivered)

    @property
    def gone(self) -> bool:
        return self.ledger.lost or self.offset not in self.ledger.unfinished

    def settle(self, *, ack: bool) -> bool:
        if self.gone:
            return False
        if ack:
            self.ledger.finish(self.offset)
        else:
            self.redelivered = True  # handed back: this attempt counts
            self.consumer.hand_back(self)
        return True


class KafkaDelivery(LeasedDelivery[Raw]):
    """A fetched record under a client-side lease; settling it finishes its offset and commits."""

    broker_name = "Kafka"

    def __init__(self, consumer: Owner, raw: Raw) -> None:
        super().__init__(raw, consumer, consumer, consumer.broker)
        self._consumer = consumer
        reader = FieldReader()  # headers come from whoever produced: read like a body
        self.headers = public_headers(raw.record, reader)
        reader.count(restamping.stamped_count(raw.table), f"{restamping.ATTEMPTS_HEADER} header")
        self.message_id = reader.text(raw.table.get(MESSAGE_ID), f"{MESSAGE_ID} header")
        self.problem = reader.problem
        self.position = (raw.offset,) if consumer.single_partition else None

    async def ack(self) -> None:
        await super().ack()
        self._consumer.commit_soon()

    async def nack(self, delay: float = 0.0) -> None:
        await super().nack(delay)
        if delay > 0:
            self._consumer.commit_soon()

    async def defer(self, delay: float) -> None:
        await super().defer(delay)
        self._consumer.commit_soon()

    async def dead_letter(self, reason: str, *, error_type: str = "Error") -> None:
        await super().dead_letter(reason, error_type=error_type)
        self._consumer.commit_soon()
        await self._consumer.broker.trim_dead_letters(dlq_of(self.queue))
