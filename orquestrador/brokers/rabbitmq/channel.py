"""pika made awaitable: the bridge under the RabbitMQ adapter. It imports nothing of the toolkit.

pika's :class:`~pika.adapters.asyncio_connection.AsyncioConnection` runs on the caller's event
loop and reports everything through callbacks; this module turns them into awaitables so that
the adapter (:mod:`.broker`, :mod:`.consumer`, :mod:`.events`) reads as plain async code, and
pika's exceptions into three of its own (:class:`ChannelClosed`, :class:`Returned`,
:class:`Nacked`), which :mod:`.errors` maps to the toolkit's.

- :class:`AsyncChannel` — one channel; every future still waiting on it fails with
  :class:`ChannelClosed` the moment the broker closes it or the connection drops, so nobody
  waits forever on a reply that cannot come.
- :class:`ConfirmPublisher` — a channel in confirm mode with any number of messages in flight:
  each ``basic_publish`` gets the next delivery tag and a future, and the broker's
  ``basic.ack``/``basic.nack`` (``multiple=True`` covers every tag up to it) resolves them, so
  hundreds of publishes share round trips instead of waiting one by one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pika
import pika.channel
import pika.exceptions
import pika.frame
from pika import spec
from pika.adapters.asyncio_connection import AsyncioConnection

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
        frame = await self.rpc(lambda cb: self.raw.queue_declare(queue, callback=cb, **options))
        ok: spec.Queue.DeclareOk = frame.method
        return ok

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
        got: tuple[Any, spec.BasicProperties, bytes] | None = await fut
        return got

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
        self,
        routing_key: str,
        body: bytes,
        properties: spec.BasicProperties,
        exchange: str = "",
        *,
        mandatory: bool = True,
    ) -> asyncio.Future[None]:
        """Put the message on the wire now; the future resolves with the broker's confirm.
        ``mandatory``: one no queue takes is a :class:`Returned` (a topic with no subscriber is not)."""
        fut = self.channel.future()
        if fut.done():
            return fut
        try:
            self.channel.raw.basic_publish(exchange, routing_key, body, properties, mandatory=mandatory)
        except WIRE_ERRORS as exc:
            _fail(fut, ChannelClosed(0, short_reason(exc)))
            return fut
        self._pending[self._next_tag] = _Pending(fut, routing_key, body)
        self._next_tag += 1
        return fut

    def _on_confirm(self, frame: pika.frame.Method[Any]) -> None:
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
