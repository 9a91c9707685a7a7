"""What a NATS worker holds: the shared durable pull consumer and each delivered message.

The mapping is in :mod:`orquestrador.brokers.nats` (the package docstring).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

from nats.aio.msg import Msg
from nats.js import JetStreamContext

from orquestrador.brokers.base import Consumer, Delivery
from orquestrador.brokers.intake import DeliveryFields
from orquestrador.brokers.nats import pull
from orquestrador.brokers.nats.errors import NotFound, mapped, quietly
from orquestrador.brokers.nats.names import DURABLE, MSG_ID, stream_name
from orquestrador.errors import BrokerError


class Host(Protocol):
    """What deliveries and consumers need of their broker (no import of the broker module)."""

    request_timeout: float
    reconnects: int

    @property
    def js(self) -> JetStreamContext: ...

    async def ensure_consumer(self, queue: str, visibility: float) -> None: ...

    async def publish(
        self, queue: str, body: bytes, *, message_id: str | None = None, headers: dict[str, str] | None = None
    ) -> None: ...


# ``Nats-*`` headers steer the server (dedup, expected stream, TTL...): never carried over.
FIELDS = DeliveryFields("NATS headers", "Nats-Msg-Id header", skip=("nats-",))


class NatsDelivery(Delivery):
    def __init__(self, broker: Host, queue: str, msg: Msg) -> None:
        self._broker = broker
        self._msg = msg
        self.body = msg.data
        self.queue = queue
        self.attempt = msg.metadata.num_delivered or 1
        FIELDS.read(self, msg.headers, (msg.headers or {}).get(MSG_ID))  # headers, message_id, problem
        self.position = (msg.metadata.sequence.stream,)

    async def ack(self) -> None:
        with mapped(f"ack failed on {self.queue}"), contextlib.suppress(NotFound):  # already gone
            await self._msg.ack_sync(timeout=self._broker.request_timeout)

    async def nack(self, delay: float = 0.0) -> None:
        with mapped(f"nack failed on {self.queue}"):
            await self._msg.nak(delay=delay if delay > 0 else None)

    async def heartbeat(self) -> None:
        with mapped(f"heartbeat failed on {self.queue}"):
            await self._msg.in_progress()

    async def _publish_dead_letter(self, dlq: str, headers: dict[str, str]) -> None:
        await self._broker.publish(dlq, self.body, headers=headers)


class NatsConsumer(Consumer):
    def __init__(self, broker: Host, queue: str, visibility: float, prefetch: int) -> None:
        self._broker = broker
        self._queue = queue
        self._visibility = visibility
        self._prefetch = prefetch
        self._sub: JetStreamContext.PullSubscription | None = None
        self._generation = -1

    async def _subscription(self) -> JetStreamContext.PullSubscription:
        # After a reconnect the server may have lost the consumer (or the stream); re-create it.
        if self._sub is None or self._generation != self._broker.reconnects:
            self._generation = self._broker.reconnects
            await self._broker.ensure_consumer(self._queue, self._visibility)
            await self._drop_subscription()
            self._sub = await self._broker.js.pull_subscribe_bind(
                durable=DURABLE, stream=stream_name(self._queue),
                pending_msgs_limit=max(1024, self._prefetch * 4),
            )  # fmt: skip
        return self._sub

    async def fetch(self, max_messages: int, timeout: float) -> list[Delivery]:
        try:
            with mapped(f"fetch from {self._queue} failed", passing=(NotFound,)):
                sub = await self._subscription()
                msgs = await pull.fetch(sub, max(1, max_messages), max(timeout, 0.0))
        except NotFound:
            await self._drop_subscription()
            return []
        except BrokerError:
            await self._drop_subscription()
            raise
        return [NatsDelivery(self._broker, self._queue, m) for m in msgs]

    async def _drop_subscription(self) -> None:
        # Unsubscribed, not just forgotten: the client would otherwise keep it, and its drain on
        # close waits 30 s for it (nats-py never marks what a fetch took as done).
        sub, self._sub = self._sub, None
        if sub is None:
            return
        # Messages the server already sent it would wait out AckWait: give them back now.
        pending = getattr(getattr(sub, "_sub", None), "_pending_queue", None)
        while isinstance(pending, asyncio.Queue) and not pending.empty():
            msg = pending.get_nowait()
            pending.task_done()
            if msg.reply:
                await quietly(msg.nak())
        await quietly(sub.unsubscribe())

    async def close(self) -> None:
        await self._drop_subscription()
