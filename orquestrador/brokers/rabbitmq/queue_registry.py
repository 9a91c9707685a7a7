"""Which queues this toolkit declared on RabbitMQ, kept on the broker itself.

AMQP 0-9-1 cannot list queues and the management plugin may be off, so each name this toolkit
declares is recorded as a message (``+q``; ``~q.retry.N`` for a delay bucket) in ``orq.queues``,
a durable queue with a single active consumer, so readers take turns. ``queues()`` and
``delete()`` append a marker, read up to it, ack away duplicates and names whose queue is gone
(passive declare), and close the channel, which puts the rest back in place.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from pika import spec

from orquestrador.brokers.rabbitmq.channel import PRECONDITION_FAILED, AsyncChannel, ChannelClosed, T
from orquestrador.brokers.rabbitmq.errors import mapped
from orquestrador.errors import BrokerError

log = logging.getLogger(__name__)

REGISTRY = "orq.queues"
PERSISTENT = spec.BasicProperties(delivery_mode=2)


class Admin(Protocol):
    """What the registry needs of its broker, so this module never imports it."""

    queue_arguments: dict[str, Any]  # the queue type every queue of the broker is declared with

    async def admin(self, op: Callable[[AsyncChannel], Awaitable[T]]) -> T: ...

    async def send(self, routing_key: str, body: bytes, props: spec.BasicProperties) -> None: ...

    async def open_channel(self) -> AsyncChannel: ...

    async def exists(self, name: str) -> bool: ...


class QueueRegistry:
    """The names this toolkit declared, one message each in ``orq.queues`` (see the module)."""

    def __init__(self, broker: Admin) -> None:
        self.broker = broker
        self.usable: bool | None = None
        self._written: set[str] = set()

    async def _ensure(self) -> bool:
        if self.usable is None:
            # One reader (compacter) at a time; replicated like every queue of the broker.
            arguments = {"x-single-active-consumer": True, **self.broker.queue_arguments}
            try:
                try:
                    await self.broker.admin(lambda ch: ch.declare(REGISTRY, arguments=arguments))
                except ChannelClosed as exc:
                    if exc.code != PRECONDITION_FAILED:
                        raise
                    # Declared by a user of the other queue type: one registry serves both.
                    await self.broker.admin(lambda ch: ch.declare(REGISTRY, passive=True))
            except ChannelClosed as exc:
                if not exc.code:
                    return False  # connection trouble: try again next time
                log.warning("cannot use %s as the queue registry (%s); queues() lists this process's "
                            "queues only", REGISTRY, exc)  # fmt: skip
                self.usable = False
            else:
                self.usable = True
        return self.usable

    async def add(self, op: str, names: list[str]) -> None:
        """Record ``+queue`` / ``~bucket``, once per process; never fail a declare for it."""
        todo = [n for n in names if n not in self._written]
        try:
            if not todo or not await self._ensure():
                return
            await asyncio.gather(*(self.broker.send(REGISTRY, f"{op}{n}".encode(), PERSISTENT) for n in todo))
        except BrokerError as exc:
            log.warning("cannot record %s in %s: %s", ", ".join(todo), REGISTRY, exc)
            self.usable = None
            return
        self._written.update(todo)

    def forget(self, name: str) -> None:
        self._written.discard(name)  # its entry goes at the next snapshot: the queue is gone

    async def snapshot(self) -> dict[str, str]:
        """Every recorded name that still exists (``+`` queue or ``~`` bucket), compacting the registry.

        Reads up to a marker it appends first and acks (removes) its marker, duplicates and names
        whose queue is gone; closing the channel puts the rest back in place for the next reader.
        """
        marker = f"?{time.time():.0f}:{uuid.uuid4().hex}"
        read: list[tuple[int, str]] = []

        def on_message(_raw: Any, method: Any, _props: Any, body: bytes) -> None:
            if not done.done():
                read.append((method.delivery_tag, body.decode("utf-8", "replace")))
                if read[-1][1] == marker:
                    done.set_result(None)

        try:
            if not await self._ensure():
                return {}
            await self.broker.send(REGISTRY, marker.encode(), PERSISTENT)
            channel = await self.broker.open_channel()
            done = channel.future()
            try:
                with mapped(f"cannot read {REGISTRY}"):
                    await channel.consume(REGISTRY, on_message)
                    await asyncio.wait_for(done, 30)
                live, drop = await self._sift(read, marker)
                for tag in drop:
                    channel.send(channel.raw.basic_ack, tag)
            finally:
                await channel.close()
        except (BrokerError, TimeoutError) as exc:
            log.warning("cannot read %s (%s); listing this process's queues only", REGISTRY, exc or "timeout")
            self.usable = None
            return {}
        return live

    async def _sift(self, read: list[tuple[int, str]], marker: str) -> tuple[dict[str, str], list[int]]:
        """Live names, and the tags to drop: our marker, stale ones (a reader that died), dead names."""
        live: dict[str, str] = {}
        drop: list[int] = []
        for tag, text in read:
            if text.startswith("?"):
                stamp = text[1:].partition(":")[0]
                if text == marker or not stamp.isdigit() or time.time() - int(stamp) > 300:
                    drop.append(tag)
            elif text[:1] not in "+~" or text[1:] in live or not await self.broker.exists(text[1:]):
                drop.append(tag)
            else:
                live[text[1:]] = text[0]
        return live, drop
