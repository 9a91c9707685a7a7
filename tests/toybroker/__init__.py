"""A toy broker package, as a third party would write one: registered through the entry-point
group ``orquestrador.brokers`` (``tests/brokers/test_toy_broker.py`` installs it for a run) and
built on the memory broker's public :class:`~orquestrador.brokers.memory.Space` with a reduced
capability set.

Its store only keeps messages: it drops no duplicate ``message_id``, counts no deliveries (it
tells, like AMQP, only whether a message was handed out before), never takes an unsettled
message back by itself and cannot hold one message back. So every fallback of
:mod:`orquestrador.brokers.support` is on, switched on by the declaration below: publish dedup
(``Broker.deduplicated``), attempt restamping (``support.attempts``), the client-side lease
(``support.lease``) and delay buckets (``support.delays``), whose only primitive here is "a bucket
queue moves its messages back ``ms`` after they entered it" (RabbitMQ's per-queue TTL). The
contract suite expects what the same declaration says.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from orquestrador.brokers.base import DLQ_SUFFIX, Consumer, Delivery, Message, validate_queue_name
from orquestrador.brokers.intake import DeliveryFields
from orquestrador.brokers.memory import Entry, MemoryBroker, Space
from orquestrador.brokers.support import attempts as restamping
from orquestrador.brokers.support.delays import bucket_name, bucket_of
from orquestrador.brokers.support.lease import LeasedDelivery
from orquestrador.errors import BrokerError

_POLL = 0.005
_NEVER = float("inf")  # no server-side lease: a taken message is held until settled or released


# The stamped count is an ``x-`` header, as on RabbitMQ: never part of the public headers.
FIELDS = DeliveryFields("headers", "message id", count=f"{restamping.ATTEMPTS_HEADER} header", skip=("x-",))


class _Raw:
    """One taken message: the entry and the token of this hand-out (a :class:`~.attempts.Raw`)."""

    def __init__(self, space: Space, queue: str, entry: Entry) -> None:
        self.space, self.queue, self.entry, self.token = space, queue, entry, entry.token

    @property
    def body(self) -> bytes:
        return self.entry.body

    @property
    def previous(self) -> int:
        return restamping.previous(self.entry.headers, redelivered=self.entry.deliveries > 1)

    @property
    def gone(self) -> bool:
        held = self.space.queue(self.queue).in_flight.get(self.entry.seq)
        return held is None or held.token != self.token

    def settle(self, *, ack: bool) -> bool:
        with self.space.lock:
            if self.gone:
                return False
            q = self.space.queue(self.queue)
            del q.in_flight[self.entry.seq]
            if not ack:
                q.waiting[self.entry.seq] = self.entry  # back in place, marked handed-out
        return True


class ToyDelivery(LeasedDelivery[_Raw]):
    broker_name = "the toy broker"

    def __init__(self, consumer: ToyConsumer, raw: _Raw) -> None:
        super().__init__(raw, consumer, consumer, consumer.broker)
        table = raw.entry.headers
        FIELDS.read(self, table, raw.entry.message_id, count=restamping.stamped_count(table))
        self.position = (raw.entry.seq,)


class ToyConsumer(Consumer):
    def __init__(self, broker: ToyBroker, queue: str, visibility: float) -> None:
        self.broker, self.queue, self.visibility = broker, queue, visibility
        self.held: set[LeasedDelivery[_Raw]] = set()
        self._restamps = not queue.endswith(DLQ_SUFFIX)
        self._closed = False

    async def fetch(self, max_messages: int, timeout: float) -> list[Delivery]:
        if self._closed:
            raise BrokerError(f"the consumer of {self.queue} is closed")
        end = time.monotonic() + timeout
        while not self._closed:
            out: list[Delivery] = []
            for raw in self._take(max_messages):
                redelivered = raw.entry.deliveries > 1 and self._restamps
                if redelivered and await restamping.restamp(self, self.queue, raw):
                    continue  # counted: the copy waits at the back of the queue
                delivery = ToyDelivery(self, raw)
                self.held.add(delivery)
                out.append(delivery)
            if out or time.monotonic() >= end:
                return out
            await asyncio.sleep(_POLL)
        return []

    def _take(self, max_messages: int) -> list[_Raw]:
        space = self.broker.space
        with space.lock:
            self.broker.move_due(self.queue)
            return [_Raw(space, self.queue, e) for e in space.hand_out(self.queue, max_messages, _NEVER)]

    async def send_copy(
        self, queue: str, raw: _Raw, *, attempts: int, headers: dict[str, str] | None = None
    ) -> None:
        table = restamping.stamped(FIELDS.clean(raw.entry.headers) if headers is None else headers, attempts)
        self.broker.put(queue, raw.body, table, raw.entry.message_id)

    def done(self, delivery: LeasedDelivery[Any]) -> None:
        self.held.discard(delivery)

    def expired(self, delivery: LeasedDelivery[Any]) -> None:
        delivery.raw.settle(ack=False)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for delivery in list(self.held):  # a consumer going away hands its messages back now
            delivery.raw.settle(ack=False)
            delivery.lose("its consumer was closed")
        with self.broker.space.lock:
            self.broker.space.queue(self.queue).consumers -= 1


class ToyBroker(MemoryBroker):
    scheme = "toy"
    capabilities = MemoryBroker.capabilities.without(
        "server_dedup", "server_lease", "delivery_count", "delayed_redelivery"
    )

    def put(self, queue: str, body: bytes, headers: dict[str, Any], message_id: str | None) -> None:
        """The store's one write: append, whatever was there before."""
        with self.space.lock:
            self.space.append(queue, body, headers, message_id)

    async def publish(
        self,
        queue: str,
        body: bytes,
        *,
        message_id: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        validate_queue_name(queue)

        async def put() -> None:
            self.put(queue, body, dict(headers or {}), message_id)

        await self.deduplicated(queue, message_id, put)

    async def retry_bucket(self, queue: str, delay: float) -> str:
        name = bucket_name(queue, delay)
        with self.space.lock:
            self.space.queue(name)
        return name

    def move_due(self, queue: str) -> None:
        """Bucket messages whose time has come go to the back of ``queue`` (under the lock)."""
        now = time.time()
        for name in list(self.space.queues):
            if (found := bucket_of(name)) is None or found[0] != queue:
                continue
            bucket = self.space.queues[name]
            for seq, entry in sorted(bucket.waiting.items()):
                if entry.published_at + found[1] / 1000 > now:
                    break
                del bucket.waiting[seq]
                self.space.append(queue, entry.body, entry.headers, entry.message_id)

    async def consume(self, queue: str, *, visibility_timeout: float = 30.0, prefetch: int = 16) -> Consumer:
        await self.declare(queue)
        with self.space.lock:
            self.space.queue(queue).consumers += 1
        return ToyConsumer(self, queue, visibility_timeout)

    async def peek(self, queue: str, limit: int = 10) -> list[Message]:
        return [Message(m.body, FIELDS.clean(m.headers), m.id) for m in await super().peek(queue, limit)]

    async def queues(self) -> list[str]:
        return [name for name in await super().queues() if bucket_of(name) is None]

    async def delete(self, queue: str) -> None:
        await super().delete(queue)
        with self.space.lock:
            for name in [n for n in self.space.queues if (b := bucket_of(n)) is not None and b[0] == queue]:
                del self.space.queues[name]
        self.forget_ids(queue)
