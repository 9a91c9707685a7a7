"""The AMQP channels of the RabbitMQ adapter, made awaitable: admin, publisher and consumer.

pika's :class:`~pika.adapters.asyncio_connection.AsyncioConnection` runs on the caller's event
loop and reports everything through callbacks; this module turns them into awaitables so that
:mod:`orquestrador.brokers.rabbitmq` (which explains the mapping) reads as plain async code.

- :class:`AsyncChannel` — one channel; every future still waiting on it fails with
  :class:`ChannelClosed` the moment the broker closes it or the connection drops, so nobody
  waits forever on a reply that cannot come.
- :class:`ConfirmPublisher` — a channel in confirm mode with any number of messages in flight:
  each ``basic_publish`` gets the next delivery tag and a future, and the broker's
  ``basic.ack``/``basic.nack`` (``multiple=True`` covers every tag up to it) resolves them, so
  hundreds of publishes share round trips instead of waiting one by one.
- :class:`RabbitMQConsumer` — a channel with ``basic_qos`` and ``basic_consume`` feeding a
  buffer that ``fetch`` drains; it restamps redelivered messages and keeps a lease on each
  :class:`RabbitMQDelivery` it hands out.
- :class:`EventsChannel` — best-effort lifecycle events on the topic exchange ``orq.eventos``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import pika
import pika.channel
import pika.exceptions
from pika import spec
from pika.adapters.asyncio_connection import AsyncioConnection

from orquestrador.brokers import pika_reads, pika_writes
from orquestrador.brokers.base import DLQ_SUFFIX, Consumer, Delivery, EventCallback
from orquestrador.brokers.intake import FieldReader
from orquestrador.brokers.support import attempts as restamping
from orquestrador.brokers.support.lease import LeasedDelivery
from orquestrador.errors import BrokerError

log = logging.getLogger("orquestrador.brokers.rabbitmq")
pika_writes.install()
pika_reads.install()

NOT_FOUND, RESOURCE_LOCKED, PRECONDITION_FAILED = 404, 405, 406
T = TypeVar("T")
# What writing to a channel can raise. pika raises AttributeError in the instant between
# dropping a lost transport and closing its channels; to us that is a closed channel too.
WIRE_ERRORS = (pika.exceptions.AMQPError, OSError, AttributeError)


class ChannelClosed(Exception):
    """The channel is gone. ``code`` is the AMQP reply code; 0 when the connection dropped."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"({code}) {text}" if code else text)
        self.code = code
        self.text = text


class Returned(Exception):
    """The broker could not route a mandatory message: its queue does not exist (any more)."""


class Nacked(Exception):
    """The broker refused to take a message (``basic.nack``): it is not stored."""


def closed_from(reason: BaseException | None) -> ChannelClosed:
    """Our own exception for pika's reason, so callers test ``code`` instead of pika classes."""
    if isinstance(reason, pika.exceptions.ChannelClosedByBroker):
        return ChannelClosed(reason.reply_code, reason.reply_text)
    return ChannelClosed(0, short_reason(reason) if reason else "channel closed")


def short_reason(exc: BaseException | None) -> str:
    """One line for pika's deeply nested connection errors (the root OSError when there is one)."""
    seen = 0
    while exc is not None and seen < 10:
        seen += 1
        if isinstance(exc, pika.exceptions.ProbableAuthenticationError | pika.exceptions.AuthenticationError):
            return "refused the login (check the user and password)"
        if isinstance(exc, pika.exceptions.ProbableAccessDeniedError):
            return "refused access to the virtual host"
        if isinstance(exc, OSError):
            return exc.strerror or str(exc) or type(exc).__name__
        if isinstance(exc, pika.exceptions.ConnectionClosed):
            return f"({exc.reply_code}) {exc.reply_text}"
        inner = getattr(exc, "exception", None)
        if inner is None and getattr(exc, "exceptions", None):
            inner = exc.exceptions[-1]  # type: ignore[attr-defined]
        if inner is None and exc.args and isinstance(exc.args[0], BaseException):
            inner = exc.args[0]
        if inner is None:
            break
        exc = inner
    text = " ".join(str(exc).split()) if exc is not None else ""
    return text[:200] or (type(exc).__name__ if exc is not None else "unknown error")


def _resolve(fut: asyncio.Future[Any], value: Any) -> None:
    if not fut.done():
        fut.set_result(value)


def _fail(fut: asyncio.Future[Any], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)


async def open_connection(
    params: pika.connection.Parameters,
    on_lost: Callable[[AsyncioConnection, BaseException], None],
    timeout: float,
) -> AsyncioConnection:
    """Connect on the running loop; ``on_lost`` hears about every close after the open."""
    loop = asyncio.get_running_loop()
    opened: asyncio.Future[AsyncioConnection] = loop.create_future()

    def on_close(conn: AsyncioConnection, reason: BaseException) -> None:
        if opened.done():
            on_lost(conn, reason)
        else:
            _fail(opened, reason)

    def on_open(conn: AsyncioConnection) -> None:
        if opened.done():  # too late: the caller gave up waiting
            conn.close()
        _resolve(opened, conn)

    AsyncioConnection(params, on_open, lambda c, exc: _fail(opened, exc), on_close, custom_ioloop=loop)
    return await asyncio.wait_for(opened, timeout)


class AsyncChannel:
    """One AMQP channel whose replies are awaitable; see the module docstring."""

    def __init__(self, raw: pika.channel.Channel) -> None:
        self.raw = raw
        self.closed: ChannelClosed | None = None
        self._loop = asyncio.get_running_loop()
        self._waiting: set[asyncio.Future[Any]] = set()
        self._on_close: list[Callable[[ChannelClosed], None]] = []
        raw.add_on_close_callback(self._closed)

    @classmethod
    async def open(cls, connection: AsyncioConnection) -> AsyncChannel:
        opened: list[asyncio.Future[Any]] = []
        try:
            raw = connection.channel(on_open_callback=lambda _ch: _resolve(opened[0], None))
        except WIRE_ERRORS as exc:
            raise ChannelClosed(0, short_reason(exc)) from exc
        channel = cls(raw)
        opened.append(channel.future())  # open-ok cannot arrive before this: it needs the loop
        await opened[0]
        return channel

    def add_close_callback(self, callback: Callable[[ChannelClosed], None]) -> None:
        self._on_close.append(callback)

    def future(self) -> asyncio.Future[Any]:
        """A future that fails with ChannelClosed if the channel closes before it is resolved."""
        fut: asyncio.Future[Any] = self._loop.create_future()
        if self.closed is not None:
            fut.set_exception(self.closed)
        else:
            self._waiting.add(fut)
            fut.add_done_callback(self._waiting.discard)
        return fut

    async def rpc(self, start: Callable[[Callable[[Any], None]], Any]) -> Any:
        """Send a synchronous AMQP method via ``start(callback)`` and wait for its reply frame."""
        fut = self.future()
        if not fut.done():
            try:
                start(lambda frame: _resolve(fut, frame))
            except WIRE_ERRORS as exc:
                _fail(fut, ChannelClosed(0, short_reason(exc)))
        return await fut

    async def declare(self, queue: str, **options: Any) -> spec.Queue.DeclareOk:
        """``queue.declare`` (durable unless ``durable=False``); pika's keyword options."""
        options.setdefault("durable", True)
        return (await self.rpc(lambda cb: self.raw.queue_declare(queue, callback=cb, **options))).method

    async def qos(self, prefetch: int) -> None:
        await self.rpc(lambda cb: self.raw.basic_qos(prefetch_count=prefetch, callback=cb))

    async def consume(self, queue: str, on_message: Callable[..., None], **options: Any) -> str:
        """``basic.consume``; the consumer tag once the broker said consume-ok."""
        frame = await self.rpc(lambda cb: self.raw.basic_consume(queue, on_message, callback=cb, **options))
        return str(frame.method.consumer_tag)

    async def cancel(self, consumer_tag: str) -> None:
        await self.rpc(lambda cb: self.raw.basic_cancel(consumer_tag, callback=cb))

    async def purge(self, queue: str) -> int:
        return int((await self.rpc(lambda cb: self.raw.queue_purge(queue, callback=cb))).method.message_count)

    async def delete(self, queue: str) -> None:
        await self.rpc(lambda cb: self.raw.queue_delete(queue, callback=cb))

    async def get(self, queue: str) -> tuple[Any, spec.BasicProperties, bytes] | None:
        """``basic.get`` without auto-ack: (method, properties, body), or None when empty."""
        fut = self.future()
        if not fut.done():
            try:
                self.raw.add_callback(lambda frame: _resolve(fut, None), [spec.Basic.GetEmpty])
                self.raw.basic_get(queue, lambda ch, m, p, b: _resolve(fut, (m, p, b)), auto_ack=False)
            except WIRE_ERRORS as exc:
                _fail(fut, ChannelClosed(0, short_reason(exc)))
        return await fut

    def send(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> bool:
        """A fire-and-forget method (ack, nack, publish): False when the channel is gone."""
        if self.closed is not None or not self.raw.is_open:
            return False
        try:
            method(*args, **kwargs)
        except WIRE_ERRORS:
            return False
        return True

    async def close(self) -> None:
        if self.closed is not None or self.raw.is_closing or self.raw.is_closed:
            return
        fut = self.future()
        try:
            self.raw.close()
        except WIRE_ERRORS:
            return
        with contextlib.suppress(ChannelClosed):
            await fut

    def _closed(self, _raw: pika.channel.Channel, reason: BaseException) -> None:
        self.closed = closed_from(reason)
        for fut in list(self._waiting):
            _fail(fut, self.closed)
        for callback in self._on_close:
            callback(self.closed)


@dataclass
class _Pending:
    future: asyncio.Future[None]
    routing_key: str
    body: bytes
    returned: bool = False


class ConfirmPublisher:
    """A confirm-mode channel with many publishes in flight, one future per delivery tag."""

    def __init__(self, channel: AsyncChannel) -> None:
        self.channel = channel
        self._next_tag = 1
        self._pending: OrderedDict[int, _Pending] = OrderedDict()
        channel.add_close_callback(lambda _reason: self._pending.clear())

    @classmethod
    async def open(cls, connection: AsyncioConnection) -> ConfirmPublisher:
        channel = await AsyncChannel.open(connection)
        publisher = cls(channel)
        channel.raw.add_on_return_callback(publisher._on_return)
        await channel.rpc(lambda cb: channel.raw.confirm_delivery(publisher._on_confirm, callback=cb))
        return publisher

    def in_flight(self) -> list[asyncio.Future[None]]:
        """Futures of the publishes still waiting for their confirm."""
        return [pending.future for pending in self._pending.values()]

    @property
    def usable(self) -> bool:
        return self.channel.closed is None and self.channel.raw.is_open

    def publish(
        self, routing_key: str, body: bytes, properties: spec.BasicProperties, exchange: str = ""
    ) -> asyncio.Future[None]:
        """Put the message on the wire now; the future resolves with the broker's confirm."""
        fut = self.channel.future()
        if fut.done():
            return fut
        try:
            self.channel.raw.basic_publish(exchange, routing_key, body, properties, mandatory=True)
        except WIRE_ERRORS as exc:
            _fail(fut, ChannelClosed(0, short_reason(exc)))
            return fut
        self._pending[self._next_tag] = _Pending(fut, routing_key, body)
        self._next_tag += 1
        return fut

    def _on_confirm(self, frame: pika.frame.Method) -> None:
        method = frame.method
        acked = isinstance(method, spec.Basic.Ack)
        if method.multiple:
            settled = []
            while self._pending:
                tag = next(iter(self._pending))
                if tag > method.delivery_tag:
                    break
                settled.append(self._pending.popitem(last=False)[1])
        else:
            one = self._pending.pop(method.delivery_tag, None)
            settled = [one] if one is not None else []
        for pending in settled:
            if not acked:
                _fail(pending.future, Nacked(f"RabbitMQ refused a message for {pending.routing_key}"))
            elif pending.returned:
                _fail(pending.future, Returned(f"no queue named {pending.routing_key}"))
            else:
                _resolve(pending.future, None)

    def _on_return(self, _ch: Any, method: Any, _props: Any, body: bytes) -> None:
        # A basic.return carries no delivery tag; it precedes the ack of its own message, so
        # the oldest unconfirmed publish with the same routing key and body is the one.
        for pending in self._pending.values():
            if not pending.returned and pending.routing_key == method.routing_key and pending.body == body:
                pending.returned = True
                return


# -- consuming ----------------------------------------------------------------------------


class Host(Protocol):
    """What consumers and deliveries need of their broker, so this module never imports it."""

    consumers: set[RabbitMQConsumer]

    @property
    def connected(self) -> bool: ...

    async def declare(self, queue: str) -> None: ...

    def forget(self, queue: str) -> None: ...

    async def open_channel(self) -> AsyncChannel: ...

    async def retry_bucket(self, queue: str, delay: float) -> str: ...

    async def send(self, routing_key: str, body: bytes, props: spec.BasicProperties) -> None: ...


def public_headers(props: spec.BasicProperties, reader: FieldReader | None = None) -> dict[str, str]:
    """The application's headers, as text; ``x-`` ones belong to RabbitMQ or to this adapter."""
    headers = props.headers if isinstance(props.headers, dict) else {}
    return (reader or FieldReader()).headers(headers.items(), "AMQP headers", skip=("x-",))


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

    @property
    def previous(self) -> int:
        """Attempts made before this copy was written (our header), plus the broker's flag."""
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
        reader = FieldReader()
        if unreadable := pika_reads.unreadable(raw.props):
            reader.problems.append(unreadable)
        self.headers = public_headers(raw.props, reader)
        restamping.read_count(raw.props.headers, reader)
        self.message_id = reader.text(raw.props.message_id, "message_id property")
        self.problem = reader.problem


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
        self._restamps = not queue.endswith(DLQ_SUFFIX)
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
            await translate(channel.qos(self.prefetch), f"cannot set prefetch on {self.queue}")
        ch = self._channel

        def on_message(_raw_ch: Any, method: Any, props: spec.BasicProperties, body: bytes) -> None:
            self._on_message(_Raw(ch, method.delivery_tag, method.redelivered, props, body))

        try:
            self._tag = await ch.consume(self.queue, on_message)
        except ChannelClosed as exc:
            if exc.code == NOT_FOUND:
                self.broker.forget(self.queue)  # deleted behind our back: declare again next time
            raise BrokerError(f"cannot consume from {self.queue}: {exc}") from exc

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
        await restamping.hand_back(self, self.queue, waiting)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._subscribing is not None and not self._subscribing.done():
            self._subscribing.cancel()
        if self.broker.connected:
            await self.pause()  # no new deliveries; the buffer goes back with its counts
        if self._tasks:  # restamps in progress: let them ack their originals
            await asyncio.wait(set(self._tasks), timeout=10)
        if self._channel is not None:
            await self._channel.close()  # fetched but unsettled deliveries go back now
        for delivery in list(self.held):
            delivery.lose("its consumer was closed")
        self.broker.consumers.discard(self)


class EventsChannel:
    """Best-effort events: a topic exchange, an exclusive auto-delete queue per subscription.

    Subjects are NATS-style (``a.b.c``, ``*`` one token, ``>`` the rest); ``>`` becomes AMQP's
    ``#``. Events are transient and unconfirmed, like NATS core publishes: a lifecycle event may
    be lost, the four envelope types are the durable contract.
    """

    EXCHANGE = "orq.eventos"

    def __init__(self, open_channel: Callable[[], Awaitable[AsyncChannel]]) -> None:
        self._open_channel = open_channel
        self._channel: AsyncChannel | None = None
        self._subscriptions: set[Callable[[], Awaitable[None]]] = set()
        self._tasks: set[asyncio.Future[Any]] = set()

    async def channel(self) -> AsyncChannel:
        if self._channel is None or self._channel.closed is not None:
            channel = await self._open_channel()
            declare = channel.rpc(
                lambda cb: channel.raw.exchange_declare(self.EXCHANGE, "topic", durable=True, callback=cb)
            )
            await translate(declare, f"cannot declare the exchange {self.EXCHANGE}")
            self._channel = channel
        return self._channel

    async def publish(self, subject: str, body: bytes) -> None:
        try:
            channel = await self.channel()
        except BrokerError as exc:
            log.debug("event not sent: %s", exc)
            return
        channel.send(channel.raw.basic_publish, self.EXCHANGE, subject, body)

    async def subscribe(self, subject: str, callback: EventCallback) -> Callable[[], Awaitable[None]]:
        pattern = ".".join("#" if token == ">" else token for token in subject.split("."))
        where: list[tuple[AsyncChannel, str]] = []

        def on_message(_ch: Any, _method: Any, _props: Any, body: bytes) -> None:
            try:  # a failing callback must not break pika's frame dispatch (and the connection)
                result = callback(body)
            except Exception:
                log.exception("event callback for %s failed", subject)
                return
            if asyncio.iscoroutine(result):
                task = asyncio.ensure_future(result)
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

        async def start() -> None:
            channel = await self.channel()
            ok = await channel.declare("", durable=False, exclusive=True, auto_delete=True)
            await channel.rpc(
                lambda cb: channel.raw.queue_bind(ok.queue, self.EXCHANGE, pattern, callback=cb)
            )
            where[:] = [(channel, await channel.consume(ok.queue, on_message, auto_ack=True))]

        async def stop() -> None:
            self._subscriptions.discard(start)
            if where:
                channel, tag = where.pop()
                with contextlib.suppress(ChannelClosed):
                    await channel.cancel(tag)  # the auto-delete queue goes with its only consumer

        await translate(start(), f"cannot subscribe to events {subject}")
        self._subscriptions.add(start)
        return stop

    async def restore(self) -> None:
        """After a reconnect, bind every subscription again (their queues died with the old one)."""
        for start in list(self._subscriptions):
            with contextlib.suppress(BrokerError, ChannelClosed):
                await start()


async def translate(awaitable: Awaitable[T], what: str) -> T:
    """Await, turning a closed channel into BrokerError: the boundary of this adapter."""
    try:
        return await awaitable
    except ChannelClosed as exc:
        raise BrokerError(f"{what}: {exc}") from exc
