"""Best-effort lifecycle events over RabbitMQ: the topic exchange ``orq.eventos``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from orquestrador.brokers.base import EventCallback
from orquestrador.brokers.rabbitmq.channel import AsyncChannel, ChannelClosed
from orquestrador.brokers.rabbitmq.errors import mapped
from orquestrador.errors import BrokerError

log = logging.getLogger(__name__)


class EventsChannel:
    """Best-effort events: a topic exchange, an exclusive auto-delete queue per subscription.

    Subjects are NATS-style (``a.b.c``, ``*`` one token, ``>`` the rest); ``>`` becomes AMQP's
    ``#``. Events are transient and unconfirmed, like NATS core publishes: a lifecycle event may
    be lost, the four envelope types are the durable contract.
    """

    EXCHANGE = "orq.eventos"

    def __init__(self, open_channel: Callable[[], Awaitable[AsyncChannel]], exchange: str = EXCHANGE) -> None:
        self.exchange = exchange  # another family of subjects (topics) has an exchange of its own
        self._open_channel = open_channel
        self._channel: AsyncChannel | None = None
        self._subscriptions: set[Callable[[], Awaitable[None]]] = set()
        self._tasks: set[asyncio.Future[Any]] = set()

    async def channel(self) -> AsyncChannel:
        if self._channel is None or self._channel.closed is not None:
            channel = await self._open_channel()
            with mapped(f"cannot declare the exchange {self.exchange}"):
                await channel.rpc(
                    lambda cb: channel.raw.exchange_declare(self.exchange, "topic", durable=True, callback=cb)
                )
            self._channel = channel
        return self._channel

    async def publish(self, subject: str, body: bytes) -> None:
        try:
            channel = await self.channel()
        except BrokerError as exc:
            log.debug("event not sent: %s", exc)
            return
        channel.send(channel.raw.basic_publish, self.exchange, subject, body)

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
                task.add_done_callback(lambda done: self._finished(done, subject))

        async def start() -> None:
            channel = await self.channel()
            ok = await channel.declare("", durable=False, exclusive=True, auto_delete=True)
            await channel.rpc(
                lambda cb: channel.raw.queue_bind(ok.queue, self.exchange, pattern, callback=cb)
            )
            where[:] = [(channel, await channel.consume(ok.queue, on_message, auto_ack=True))]

        async def stop() -> None:
            self._subscriptions.discard(start)
            if where:
                channel, tag = where.pop()
                with contextlib.suppress(ChannelClosed):
                    await channel.cancel(tag)  # the auto-delete queue goes with its only consumer

        with mapped(f"cannot subscribe to events {subject}"):
            await start()
        self._subscriptions.add(start)
        return stop

    def _finished(self, task: asyncio.Future[Any], subject: str) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("event callback for %s failed", subject, exc_info=exc)

    async def restore(self) -> None:
        """After a reconnect, bind every subscription again (their queues died with the old one).

        One that cannot be bound is logged: the connection is likely lost again, and the next
        reconnect restores it.
        """
        for start in list(self._subscriptions):
            try:
                await start()
            except (BrokerError, ChannelClosed) as exc:
                log.warning("events subscription not restored after the reconnect (%s)", exc)
