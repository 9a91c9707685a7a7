"""The RabbitMQ broker: publishing with confirms, queues, inspection and events, over the
connection of :mod:`.connection` (see :mod:`orquestrador.brokers.rabbitmq` for the mapping)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pika import spec
from pika.adapters.asyncio_connection import AsyncioConnection

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
from orquestrador.brokers.rabbitmq.channel import (
    NOT_FOUND,
    PRECONDITION_FAILED,
    RESOURCE_LOCKED,
    AsyncChannel,
    ChannelClosed,
    ConfirmPublisher,
    Nacked,
    Returned,
    T,
)
from orquestrador.brokers.rabbitmq.connection import Connection
from orquestrador.brokers.rabbitmq.consumer import RabbitMQConsumer, public_headers
from orquestrador.brokers.rabbitmq.errors import mapped
from orquestrador.brokers.rabbitmq.events import EventsChannel
from orquestrador.brokers.rabbitmq.queue_registry import QueueRegistry
from orquestrador.brokers.rabbitmq.topics import RabbitMQTopics
from orquestrador.brokers.support.delays import BUCKET_GRACE_MS, bucket_ms, bucket_name
from orquestrador.brokers.support.limits import DlqLimits
from orquestrador.errors import BrokerError, ConfigError
from orquestrador.settings import pop_url_options, redact_url

log = logging.getLogger(__name__)


# ``?queue_type=``: classic queues (one node holds each) or quorum queues (Raft-replicated on the
# cluster's nodes, with a broker-side delivery count).
QUEUE_TYPES = ("classic", "quorum")


class RabbitMQBroker(Broker):
    """One AMQP connection (``amqp://`` or ``amqps://``) on the running loop; see the module docstring."""

    scheme = "amqp"
    display_name = "RabbitMQ"
    # What RabbitMQ lacks, this adapter supplies (see the module docstring); peek, in_flight,
    # oldest_age and slots stay as AMQP 0-9-1 allows.
    capabilities = Capabilities.lacking(
        "server_dedup", "delivery_count", "server_lease", "delayed_redelivery", "positions",
        "side_effect_free_peek", "shared_slots", "global_in_flight", "oldest_age",
    )  # fmt: skip

    def __init__(self, url: str, *, connect_timeout: float = 10.0, publish_timeout: float = 30.0) -> None:
        super().__init__(url)
        self.plain_url, options = pop_url_options(self.plain_url, {"queue_type"})
        self.queue_type = options.get("queue_type", "classic")
        if self.queue_type not in QUEUE_TYPES:
            raise ConfigError(
                f"?queue_type={self.queue_type[:20]!r} in broker URL {redact_url(url)!r}: use "
                + " or ".join(QUEUE_TYPES)
            )
        if self.queue_type == "quorum":  # the broker counts deliveries itself (x-delivery-count)
            self.capabilities = dataclasses.replace(type(self).capabilities, delivery_count=True)
        # Classic queues are declared without the argument, as before and as plain pika does.
        quorum = self.queue_type == "quorum"
        self.queue_arguments: dict[str, Any] = {"x-queue-type": "quorum"} if quorum else {}
        self.connect_timeout = connect_timeout
        self.publish_timeout = publish_timeout
        self.consumers: set[RabbitMQConsumer] = set()
        self.reconnects = 0  # connections re-established (orq_broker_reconnects_total)
        self._link = Connection(url, self.plain_url, self.tls, connect_timeout, self._lost, self._restored)
        self._publisher: ConfirmPublisher | None = None
        self._publisher_lock = asyncio.Lock()
        self._admin: AsyncChannel | None = None
        self._admin_lock = asyncio.Lock()
        # ORQ_DLQ_MAX_* as queue arguments: set when a dead-letter queue is created; RabbitMQ refuses
        # new arguments for an existing queue (406, logged by _declare_one), which keeps its own.
        limits = DlqLimits.from_env()
        self._dlq_arguments: dict[str, Any] | None = {
            k: v for k, v in (("x-message-ttl", int(limits.max_age * 1000) if limits.max_age else None),
                              ("x-max-length", limits.max_messages)) if v is not None
        } or None  # fmt: skip
        self._buckets: set[str] = set()
        self._events = EventsChannel(self.open_channel)
        self._topics = RabbitMQTopics(self)
        self._registry = QueueRegistry(self)

    @property
    def connected(self) -> bool:
        return self._link.open

    # -- connection (connection.py) ----------------------------------------------------------

    async def connect(self) -> None:
        await self._link.start()

    def _lost(self) -> None:
        self._publisher = self._admin = None

    async def _restored(self) -> None:
        self.reconnects += 1
        await self._events.restore()
        await self._topics.restore()

    async def connection(self) -> AsyncioConnection:
        """The open connection, waiting for a reconnect in progress (up to ``connect_timeout``)."""
        return await self._link.current(self.not_connected())

    async def open_channel(self) -> AsyncChannel:
        return await self._link.channel(self.not_connected())

    async def close(self) -> None:
        self._link.closing()
        for consumer in list(self.consumers):
            with contextlib.suppress(BrokerError, ChannelClosed):
                await asyncio.wait_for(consumer.close(), 10)
        self._publisher = self._admin = None
        await self._link.close()

    # -- publishing ------------------------------------------------------------------------

    async def confirm_channel(self) -> ConfirmPublisher:
        publisher = self._publisher
        if publisher is not None and publisher.usable:
            return publisher
        async with self._publisher_lock:
            if self._publisher is None or not self._publisher.usable:
                connection = await self.connection()
                with mapped("cannot open the publish channel"):
                    self._publisher = await ConfirmPublisher.open(connection)
            return self._publisher

    async def send(self, routing_key: str, body: bytes, props: spec.BasicProperties) -> None:
        """Publish and wait for the confirm; resend after a lost channel until ``publish_timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.publish_timeout
        delay, refused = 0.05, 0
        with mapped(f"publish to {routing_key} failed"):  # a nack too: the broker did not store it
            while True:
                try:
                    publisher = await self.confirm_channel()
                    await publisher.publish(routing_key, body, props)
                    return
                except Returned:
                    refused += 1
                    if refused > 2 or routing_key not in self._declared:
                        raise
                    self.forget(routing_key)
                    await self.declare(routing_key)
                except ChannelClosed as exc:
                    refused += 1 if exc.code else 0
                    if refused > 2 or loop.time() > deadline:
                        raise
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 1.0)
                except Nacked:
                    # Not stored, so sending again is safe. A quorum queue nacks while it has no
                    # leader, and a channel that published to it before a leader change may go on
                    # nacking: the next attempt gets a fresh publish channel.
                    if loop.time() > deadline:
                        raise
                    await self._drop_publisher(publisher)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 1.0)

    async def _drop_publisher(self, publisher: ConfirmPublisher) -> None:
        async with self._publisher_lock:
            if self._publisher is publisher:
                self._publisher = None
                with contextlib.suppress(ChannelClosed):
                    await publisher.channel.close()  # its other publishes are sent again

    async def publish(
        self,
        queue: str,
        body: bytes,
        *,
        message_id: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        await self.declare(queue)
        table = dict(headers) if headers else None
        props = spec.BasicProperties(delivery_mode=2, message_id=message_id, headers=table)
        send = functools.partial(self.send, queue, body, props)
        await self.deduplicated(queue, message_id, send)  # no server-side dedup: support.dedup

    # -- queues ----------------------------------------------------------------------------

    async def admin(self, op: Callable[[AsyncChannel], Awaitable[T]]) -> T:
        """Run ``op`` on the admin channel, one at a time, so a 404/406 is the caller's own."""
        async with self._admin_lock:
            for attempt in (1, 2):
                if self._admin is None or self._admin.closed is not None:
                    self._admin = await self.open_channel()
                try:
                    return await op(self._admin)
                except ChannelClosed as exc:
                    if exc.code or attempt == 2:
                        raise
            raise AssertionError("unreachable")

    async def _declare_one(self, name: str, arguments: dict[str, Any] | None = None) -> None:
        with mapped(f"cannot declare queue {name}"):
            try:
                await self.admin(lambda ch: ch.declare(name, arguments=arguments))
            except ChannelClosed as exc:
                if exc.code == PRECONDITION_FAILED:
                    log.warning("queue %s exists with other properties (%s); using it as it is",
                                name, exc.text)  # fmt: skip
                    await self._count(name)
                elif exc.code == RESOURCE_LOCKED:
                    raise BrokerError(f"queue {name} is exclusive to another connection") from exc
                else:
                    raise

    async def _declare_new(self, names: list[str]) -> None:
        for name in names:
            dlq = name.endswith(DLQ_SUFFIX) and self._dlq_arguments
            await self._declare_one(name, {**self.queue_arguments, **(dlq or {})} or None)
        await self._registry.add("+", names)

    async def retry_bucket(self, queue: str, delay: float) -> str:
        """Declare (every time: that renews its ``x-expires``) the bucket queue for ``delay``."""
        ms = bucket_ms(delay)
        name = bucket_name(queue, delay)
        arguments = {"x-message-ttl": ms, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": queue,
                     "x-expires": ms + BUCKET_GRACE_MS, **self.queue_arguments}  # fmt: skip
        await self._declare_one(name, arguments)
        if name not in self._buckets:
            await self._registry.add("~", [name])
            self._buckets.add(name)
        return name

    async def ready_count(self, queue: str) -> int:
        """Messages ready for delivery in ``queue`` (not those a consumer holds)."""
        return int((await self._count(queue)).message_count)

    async def until_ready(self, queue: str, expected: int) -> None:
        """A quorum queue takes returned messages back through its log, a moment after their
        channel closed: wait (at most a second) until its count shows ``expected`` again, so
        whoever returned them reads its own state."""
        for _ in range(50):
            try:
                if await self.ready_count(queue) >= expected:
                    return
            except BrokerError:
                return
            await asyncio.sleep(0.02)

    async def _count(self, name: str) -> spec.Queue.DeclareOk:
        """A passive declare: message and consumer counts, or BrokerError if ``name`` is missing."""
        with mapped(f"cannot use {name}"):
            return await self.admin(lambda ch: ch.declare(name, passive=True))

    async def consume(self, queue: str, *, visibility_timeout: float = 30.0, prefetch: int = 16) -> Consumer:
        consumer = RabbitMQConsumer(self, queue, visibility_timeout, prefetch)
        await consumer.subscribe()
        self.consumers.add(consumer)
        return consumer

    async def own_writes(self) -> None:
        """Wait for this broker's publishes in flight, and for those their confirms set off (a
        worker dead-letters right after its result is confirmed): a process reads its writes."""
        for _ in range(3):
            pending = self._publisher.in_flight() if self._publisher is not None else []
            if not pending:
                return
            await asyncio.wait(pending, timeout=self.publish_timeout)
            await asyncio.sleep(0)

    async def stats(self, queue: str) -> QueueStats:
        await self.declare(queue)
        await self.own_writes()
        main = await self._count(queue)
        dead = 0 if queue.endswith(DLQ_SUFFIX) else (await self._count(dlq_of(queue))).message_count
        in_flight = sum(c.in_flight for c in self.consumers if c.queue == queue)
        return QueueStats(queue=queue, depth=main.message_count, in_flight=in_flight, dead_letters=dead,
                          consumers=main.consumer_count)  # fmt: skip

    async def peek(self, queue: str, limit: int = 10) -> list[Message]:
        await self.declare(queue)
        await self.own_writes()
        before = await self.ready_count(queue) if self.queue_type == "quorum" else 0
        channel = await self.open_channel()
        out: list[Message] = []
        try:
            with mapped(f"cannot peek {queue}"):
                while len(out) < limit:
                    got = await channel.get(queue)
                    if got is None:
                        break
                    _method, props, body = got
                    out.append(Message(body, public_headers(props), props.message_id or ""))
        finally:
            await channel.close()  # puts them back where they were (marked redelivered)
        if out and before:
            await self.until_ready(queue, before)
        return out

    async def purge(self, queue: str) -> int:
        await self.declare(queue)
        with mapped(f"cannot purge {queue}"):
            return await self.admin(lambda ch: ch.purge(queue))

    async def delete(self, queue: str) -> None:
        validate_queue_name(queue)
        prefix = f"{queue}.retry."
        known = {n for n, op in (await self._registry.snapshot()).items() if op == "~"} | self._buckets
        for name in [queue, dlq_of(queue), *sorted(n for n in known if n.startswith(prefix))]:
            with mapped(f"cannot delete {name}"):
                await self.admin(lambda ch: ch.delete(name))  # noqa: B023 - awaited right here
            self.forget(name)
            self._buckets.discard(name)
            self._registry.forget(name)
            self.forget_ids(name)

    async def queues(self) -> list[str]:
        names = {n for n, op in (await self._registry.snapshot()).items() if op == "+"}
        return sorted(names | {n for n in self._declared if await self.exists(n)})

    async def exists(self, name: str) -> bool:
        """A passive declare: the only way AMQP 0-9-1 tells whether a queue exists."""
        with mapped(f"cannot look for queue {name}"):
            try:
                await self.admin(lambda ch: ch.declare(name, passive=True))
            except ChannelClosed as exc:
                if exc.code != NOT_FOUND:
                    raise
                return False
        return True

    # -- events ----------------------------------------------------------------------------

    async def publish_event(self, subject: str, body: bytes) -> None:
        if self.connected:
            await self._events.publish(subject, body)

    async def subscribe_events(self, subject: str, callback: EventCallback) -> Callable[[], Awaitable[None]]:
        return await self._events.subscribe(subject, callback)

    async def publish_topic(self, topic: str, body: bytes) -> None:
        await self._topics.publish(topic, body)

    async def subscribe_topic(
        self, pattern: str, callback: TopicCallback, *, durable: str | None = None
    ) -> Unsubscribe:
        return await self._topics.subscribe(pattern, callback, durable)

    async def delete_subscription(self, durable: str) -> None:
        await self._topics.delete(durable)


__all__ = ["RabbitMQBroker"]
