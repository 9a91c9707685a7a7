"""Consuming from RabbitMQ: one channel per consumer, with the fallbacks of :mod:`..support`.

:class:`RabbitMQConsumer` is a channel with ``basic_qos`` and ``basic_consume`` feeding a buffer
that ``fetch`` drains; it restamps redelivered messages (classic queues keep no delivery count)
and keeps a client-side lease on each :class:`RabbitMQDelivery` it hands out (RabbitMQ only takes
a message back when its channel closes). See :mod:`orquestrador.brokers.rabbitmq` for the mapping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Protocol

from pika import spec

from orquestrador.brokers.base import DLQ_SUFFIX, Capabilities, Consumer, Delivery
from orquestrador.brokers.intake import DeliveryFields, FieldReader
from orquestrador.brokers.rabbitmq import pika_reads
from orquestrador.brokers.rabbitmq.channel import NOT_FOUND, AsyncChannel, ChannelClosed
from orquestrador.brokers.rabbitmq.errors import mapped
from orquestrador.brokers.support import attempts as restamping
from orquestrador.brokers.support.lease import LeasedDelivery
from orquestrador.errors import BrokerError

DELIVERY_COUNT = "x-delivery-count"  # set by quorum queues on every redelivery

log = logging.getLogger(__name__)


class Host(Protocol):
    """What consumers and deliveries need of their broker, so this module never imports it."""

    consumers: set[RabbitMQConsumer]
    capabilities: Capabilities  # delivery_count on quorum queues

    @property
    def connected(self) -> bool: ...

    async def declare(self, queue: str) -> None: ...

    def forget(self, queue: str) -> None: ...

    async def open_channel(self) -> AsyncChannel: ...

    async def retry_bucket(self, queue: str, delay: float) -> str: ...

    async def ready_count(self, queue: str) -> int: ...

    async def until_ready(self, queue: str, expected: int) -> None: ...

    async def send(self, routing_key: str, body: bytes, props: spec.BasicProperties) -> None: ...


# ``x-`` headers belong to RabbitMQ or to this adapter (the stamped count): never carried over.
FIELDS = DeliveryFields(
    "AMQP headers", "message_id property", count=f"{restamping.ATTEMPTS_HEADER} header", skip=("x-",)
)


def delivery_count(headers: Any) -> int:
    """How many times a quorum queue handed this message out before (``x-delivery-count``)."""
    table = headers if isinstance(headers, dict) else {}
    return FieldReader().count(table.get(DELIVERY_COUNT), DELIVERY_COUNT)


def public_headers(props: spec.BasicProperties) -> dict[str, str]:
    """The application's headers, as text."""
    return FIELDS.clean(props.headers)


def copy_props(
    props: spec.BasicProperties, *, attempts: int, headers: dict[str, str] | None = None
) -> spec.BasicProperties:
    """Properties for a re-published copy: same ids and metadata, our count, persistent."""
    table = restamping.stamped(dict(public_headers(props) if headers is None else headers), attempts)
    return spec.BasicProperties(
        content_type=props.content_type, content_encoding=props.content_encoding,
        headers=table or None, delivery_mode=2, priority=props.priority,
        correlation_id=props.correlation_id, reply_to=props.reply_to, message_id=props.message_id,
        timestamp=props.timestamp, type=props.type, app_id=props.app_id,
    )  # fmt: skip


@dataclass
class _Raw:
    """A message as the consumer channel handed it over (a :class:`~.support.attempts.Raw`)."""

    channel: AsyncChannel
    tag: int
    redelivered: bool
    props: spec.BasicProperties
    body: bytes
    counted: bool = False  # a quorum queue: the broker's x-delivery-count is trusted

    @property
    def previous(self) -> int:
        """Attempts made before this copy was written (our header), plus the broker's count on a
        quorum queue, else its redelivered flag."""
        if self.counted:
            stamped = restamping.previous(self.props.headers, redelivered=False)
            return stamped + delivery_count(self.props.headers)
        return restamping.previous(self.props.headers, self.redelivered)

    @property
    def gone(self) -> bool:
        return self.channel.closed is not None

    def settle(self, *, ack: bool) -> bool:
        raw = self.channel.raw
        if ack:
            return self.channel.send(raw.basic_ack, self.tag)
        return self.channel.send(raw.basic_nack, self.tag, requeue=True)


class RabbitMQDelivery(LeasedDelivery[_Raw]):
    """A fetched message under a client-side lease; settling it acks or nacks on its channel."""

    broker_name = "RabbitMQ"

    def __init__(self, consumer: RabbitMQConsumer, raw: _Raw) -> None:
        super().__init__(raw, consumer, consumer, consumer.broker)
        # Properties and headers come from whoever published: read like a body (brokers.intake).
        props = raw.props
        count = restamping.stamped_count(props.headers)
        FIELDS.read(self, props.headers, props.message_id, count=count, problem=pika_reads.unreadable(props))


class RabbitMQConsumer(Consumer):
    """One channel with ``basic_qos(prefetch)`` and ``basic_consume``; fetch takes from its buffer.

    It restamps redelivered messages (:mod:`.support.attempts`) and keeps a client-side lease on
    each delivery it hands out (:mod:`.support.lease`).
    """

    def __init__(self, broker: Host, queue: str, visibility: float, prefetch: int) -> None:
        self.broker = broker
        self.queue = queue
        self.visibility = visibility
        self.prefetch = max(1, prefetch)
        self.held: set[LeasedDelivery[_Raw]] = set()
        # A quorum queue counts redeliveries itself: nothing to restamp.
        self._counted = broker.capabilities.delivery_count
        self._restamps = not queue.endswith(DLQ_SUFFIX) and not self._counted
        self._channel: AsyncChannel | None = None
        self._tag: str | None = None
        self._subscribing: asyncio.Task[None] | None = None
        self._buffer: deque[_Raw] = deque()
        self._arrived = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._fetching = 0
        self._closed = False

    @property
    def in_flight(self) -> int:
        return len(self.held) + len(self._buffer) + len(self._tasks)

    async def send_copy(
        self, queue: str, raw: _Raw, *, attempts: int, headers: dict[str, str] | None = None
    ) -> None:
        await self.broker.send(queue, raw.body, copy_props(raw.props, attempts=attempts, headers=headers))

    async def subscribe(self) -> None:
        if self._tag is not None and self._channel is not None and self._channel.closed is None:
            return
        await self.broker.declare(self.queue)
        if self._channel is None or self._channel.closed is not None:
            channel = await self.broker.open_channel()
            channel.add_close_callback(lambda reason: self._channel_closed(channel, reason))
            channel.raw.add_on_cancel_callback(lambda _frame: self._cancelled_by_broker(channel))
            self._channel = channel
            with mapped(f"cannot set prefetch on {self.queue}"):
                await channel.qos(self.prefetch)
        ch = self._channel

        def on_message(_raw_ch: Any, method: Any, props: spec.BasicProperties, body: bytes) -> None:
            self._on_message(_Raw(ch, method.delivery_tag, method.redelivered, props, body, self._counted))

        with mapped(f"cannot consume from {self.queue}"):
            try:
                self._tag = await ch.consume(self.queue, on_message)
            except ChannelClosed as exc:
                if exc.code == NOT_FOUND:
                    self.broker.forget(self.queue)  # deleted behind our back: declare again next time
                raise

    def _on_message(self, raw: _Raw) -> None:
        if raw.redelivered and self._restamps:
            self._spawn(self._restamp(raw))
        else:
            self._hand_over(raw)

    def _hand_over(self, raw: _Raw) -> None:
        self._buffer.append(raw)
        self._arrived.set()

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _restamp(self, raw: _Raw) -> None:
        if not await restamping.restamp(self, self.queue, raw) and not raw.gone:
            self._hand_over(raw)

    def _channel_closed(self, channel: AsyncChannel, reason: ChannelClosed) -> None:
        if channel is not self._channel:
            return
        self._channel, self._tag = None, None
        self._buffer.clear()  # RabbitMQ requeues them with the channel
        for delivery in list(self.held):
            if delivery.raw.channel is channel:
                delivery.lose("its channel closed")
        if reason.code and not self._closed:
            log.warning("consumer channel on %s closed by RabbitMQ: %s", self.queue, reason)

    def _cancelled_by_broker(self, channel: AsyncChannel) -> None:
        if channel is self._channel:
            self._tag = None  # queue deleted: subscribe (and so declare) again on the next fetch

    async def fetch(self, max_messages: int, timeout: float) -> list[Delivery]:
        if self._closed:
            raise BrokerError(f"the consumer of {self.queue} is closed")
        self._fetching += 1
        try:
            if not self._buffer and not await self._wait(timeout):
                return []
            out: list[Delivery] = []
            while self._buffer and len(out) < max_messages:
                raw = self._buffer.popleft()
                if not raw.gone:
                    delivery = RabbitMQDelivery(self, raw)
                    self.held.add(delivery)
                    out.append(delivery)
            return out
        finally:
            self._fetching -= 1

    async def _wait(self, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout, 0.0)
        if self._tag is None or self._channel is None:
            if self._subscribing is None or self._subscribing.done():
                self._subscribing = asyncio.ensure_future(self.subscribe())
            done, _ = await asyncio.wait({self._subscribing}, timeout=max(timeout, 0.0))
            if not done:
                return False  # still connecting: an empty batch, the next fetch waits on
            if (exc := self._subscribing.exception()) is not None:
                raise exc
        while not self._buffer:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)
        return True

    def done(self, delivery: LeasedDelivery[Any]) -> None:
        self.held.discard(delivery)

    def expired(self, delivery: LeasedDelivery[Any]) -> None:
        self._spawn(self._requeue_expired(delivery))

    async def _requeue_expired(self, delivery: LeasedDelivery[Any]) -> None:
        if not self._fetching:
            await self.pause()  # nobody pulls here: let another consumer have it
        delivery.raw.settle(ack=False)
        log.warning("message on %s not settled within %.1fs and no heartbeat: back to the queue",
                    self.queue, self.visibility)  # fmt: skip

    async def pause(self) -> None:
        """Cancel the subscription and hand never-fetched messages back with their count unchanged."""
        channel, tag = self._channel, self._tag
        self._tag = None
        if channel is not None and tag is not None:
            with contextlib.suppress(ChannelClosed):
                await channel.cancel(tag)
        waiting = list(self._buffer)
        self._buffer.clear()
        if self._counted:
            # A quorum queue does not reliably apply acks of a cancelled consumer's messages
            # (copies would double), so they go back as they are and count one delivery.
            for raw in waiting:
                raw.settle(ack=False)
        else:
            await restamping.hand_back(self, self.queue, waiting)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._subscribing is not None and not self._subscribing.done():
            self._subscribing.cancel()
        returning, before = 0, 0
        if self._counted and self.broker.connected and self._channel is not None:
            returning = len(self._buffer) + sum(1 for d in self.held if d.raw.channel is self._channel)
            if returning:
                with contextlib.suppress(BrokerError):
                    before = await self.broker.ready_count(self.queue)
        if self.broker.connected:
            await self.pause()  # no new deliveries; the buffer goes back with its counts
        if self._tasks:  # restamps in progress: let them ack their originals
            await asyncio.wait(set(self._tasks), timeout=10)
        if self._channel is not None:
            await self._channel.close()  # fetched but unsettled deliveries go back now
        if returning:  # a quorum queue counts them a moment later: read-your-own-state for the caller
            await self.broker.until_ready(self.queue, before + returning)
        for delivery in list(self.held):
            delivery.lose("its consumer was closed")
        self.broker.consumers.discard(self)
