"""A subscription as users hold it: decoded messages to a callback, or an async iterator.

Why above ``Broker.subscribe_topic``: the broker hands over checked bodies (malformed ones are
logged and skipped by :mod:`orquestrador.topics.delivery`); here each becomes a
:class:`TopicMessage` for the user's callback, plain or ``async``, or waits in a queue for an
iterator. A callback that raises is the delivery rule's: logged on a live subscription,
retried and then dropped on a durable one.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import logging
from collections.abc import Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Any, Self

from orquestrador import display
from orquestrador.envelope import DEFAULT_MAX_BYTES
from orquestrador.errors import BrokerError, TopicError
from orquestrador.topics.delivery import validate_durable_name
from orquestrador.topics.message import TopicMessage
from orquestrador.topics.patterns import validate_pattern

if TYPE_CHECKING:
    from orquestrador.brokers.base import Broker, Unsubscribe

log = logging.getLogger("orquestrador.topics")

Callback = Callable[[TopicMessage], Awaitable[None] | None]
# Live messages an iterator has not taken yet; past this the oldest wait is dropped (a live
# subscription is lossy by definition; the broker's reader must never block on a slow reader).
MAX_BUFFERED = 10_000


class AsyncAssinatura:
    """One subscription to a pattern; cancel it with :meth:`cancelar` (or ``async with``).

    Without a callback it is an async iterator of :class:`TopicMessage`. On a durable
    subscription a message handed out by the iterator is acked when the next one is asked
    for (or when the loop ends normally): work done on it is never lost to a crash.
    """

    def __init__(
        self, padrao: str, callback: Callback | None = None, *, duravel: str | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:  # fmt: skip
        self.padrao = validate_pattern(padrao)
        self.duravel = None if duravel is None else validate_durable_name(duravel)
        self.recebidas = 0  # messages handed to the callback or the iterator
        self.descartadas = 0  # bodies that were no topic message (logged, skipped)
        self.perdidas = 0  # live messages dropped because the iterator fell MAX_BUFFERED behind
        self._callback = callback
        self._max_bytes = max_bytes
        self._queue: asyncio.Queue[tuple[TopicMessage, asyncio.Future[None] | None] | None] = asyncio.Queue()
        self._taken: asyncio.Future[None] | None = None  # the durable message the iterator handed out
        self._unsubscribe: Unsubscribe | None = None
        self._on_cancel: Callable[[AsyncAssinatura], None] | None = None
        self.ativa = False

    async def start(self, broker: Broker, on_cancel: Callable[[AsyncAssinatura], None] | None = None) -> Self:
        """Subscribe; when it returns, nothing published afterwards is missed."""
        self._unsubscribe = await broker.subscribe_topic(self.padrao, self._deliver, durable=self.duravel)
        self._on_cancel = on_cancel
        self.ativa = True
        return self

    async def _deliver(self, topic: str, body: bytes) -> None:
        try:
            message = TopicMessage.decode(body, max_bytes=self._max_bytes)
        except TopicError as exc:
            self.descartadas += 1
            log.warning("skipped a message on %s that is no topic message: %s",
                        display.escape(topic, 200), exc)  # fmt: skip
            return
        if message.topico != topic:  # the broker's topic is what the subscription matched
            message = dataclasses.replace(message, topico=topic)
        self.recebidas += 1
        if self._callback is not None:
            await self._call(message)
        elif self.duravel is None:
            if self._queue.qsize() >= MAX_BUFFERED:
                self._queue.get_nowait()
                self.perdidas += 1
                if self.perdidas in (1, 100) or self.perdidas % 10_000 == 0:
                    log.warning("subscription %r: %d live messages dropped, the reader is too slow",
                                self.padrao, self.perdidas)  # fmt: skip
            self._queue.put_nowait((message, None))
        else:  # acked (this returns) once the reader asks for the next one
            done = asyncio.get_running_loop().create_future()
            self._queue.put_nowait((message, done))
            await done

    async def _call(self, message: TopicMessage) -> None:
        assert self._callback is not None
        result = self._callback(message)  # a failure is the broker's delivery rule's to log/retry
        if inspect.isawaitable(result):
            await result

    # -- iterator form ---------------------------------------------------------------------

    def __aiter__(self) -> Self:
        if self._callback is not None:
            raise TypeError("this subscription calls its callback; subscribe without one to iterate")
        return self

    async def __anext__(self) -> TopicMessage:
        message = await self.receber()
        if message is None:
            raise StopAsyncIteration
        return message

    async def receber(self, timeout: float | None = None) -> TopicMessage | None:
        """The next message; None once cancelled, or when ``timeout`` seconds pass without one."""
        self._settle_taken()
        if not self.ativa and self._queue.empty():
            return None
        try:
            item = await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None
        if item is None:
            return None
        message, self._taken = item
        return message

    def _settle_taken(self) -> None:
        """The reader is done with the durable message it took: its delivery returns, it is acked."""
        taken, self._taken = self._taken, None
        if taken is not None and not taken.done():
            taken.set_result(None)

    # -- ending ----------------------------------------------------------------------------

    async def cancelar(self) -> None:
        """Stop receiving (a durable subscription keeps its name: what comes meanwhile waits)."""
        if not self.ativa:
            return
        self.ativa = False
        if self._on_cancel is not None:
            self._on_cancel(self)
        # A durable message handed out but not finished, or not handed out yet, stays unacked:
        # its delivery ends here (cancelled, so the broker's delivery rule neither retries nor
        # acks it) and the broker gives it to the next subscriber of the name.
        unfinished = [self._taken] if self._taken is not None else []
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is not None and item[1] is not None:
                unfinished.append(item[1])
        self._taken = None
        for future in unfinished:
            future.cancel()
        self._queue.put_nowait(None)  # wakes a reader waiting in receber()
        if self._unsubscribe is not None:
            unsubscribe, self._unsubscribe = self._unsubscribe, None
            with contextlib.suppress(BrokerError):
                await unsubscribe()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if exc is None:
            self._settle_taken()  # the loop body finished with the last message: ack it
        await self.cancelar()

    def __repr__(self) -> str:
        kind = f"duravel={self.duravel!r}" if self.duravel else "live"
        state = "active" if self.ativa else "cancelled"
        return f"AsyncAssinatura({self.padrao!r}, {kind}, {state}, recebidas={self.recebidas})"


class Subscribing:
    """What ``AsyncOrquestrador.assinar`` returns: await it for the subscription, or use it in
    ``async with`` to have it cancelled at the end of the block."""

    def __init__(self, start: Callable[[], Awaitable[AsyncAssinatura]]) -> None:
        self._start = start
        self._subscription: AsyncAssinatura | None = None

    def __await__(self) -> Generator[Any, None, AsyncAssinatura]:
        return self._start().__await__()

    async def __aenter__(self) -> AsyncAssinatura:
        self._subscription = await self._start()
        return self._subscription

    async def __aexit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if self._subscription is not None:
            await self._subscription.__aexit__(exc_type, exc, tb)


__all__ = ["MAX_BUFFERED", "AsyncAssinatura", "Callback", "Subscribing"]
