"""Topics on RabbitMQ: the topic exchange ``orq.topicos``, routing key = the topic.

Publishing is confirmed and persistent, not mandatory (a topic nobody subscribes to is no
error). A live subscription is an exclusive auto-delete queue bound with the pattern (``>``
becomes ``#``, which also matches zero tokens: deliveries are filtered by tokens), bound again
after a reconnect (:class:`~.events.EventsChannel`). A durable subscription is the durable queue
``orq.topico.<name>`` (classic or quorum like the broker's queues) bound with its pattern: it
keeps what arrives while nobody consumes it, without limit until
:meth:`~orquestrador.brokers.base.Broker.delete_subscription` (or a policy on the server) ends
it. Its consumer acks each message after the callback and consumes again after a reconnect
(what it held unacked comes back from the server). AMQP 0-9-1 cannot list a queue's bindings,
so a durable name subscribed with another pattern keeps the earlier bindings too: their
messages are acked and skipped by the filter until the subscription is deleted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from pika import spec

from orquestrador.brokers.base import TopicCallback, Unsubscribe
from orquestrador.brokers.rabbitmq.channel import AsyncChannel, ChannelClosed, ConfirmPublisher
from orquestrador.brokers.rabbitmq.errors import mapped
from orquestrador.brokers.rabbitmq.events import EventsChannel
from orquestrador.errors import BrokerError
from orquestrador.topics import delivery
from orquestrador.topics.patterns import validate_pattern

log = logging.getLogger(__name__)

EXCHANGE = "orq.topicos"
QUEUE_PREFIX = "orq.topico."
PREFETCH = 16
_PERSISTENT = spec.BasicProperties(delivery_mode=2, content_type="application/json")


def binding_key(pattern: str) -> str:
    return ".".join("#" if token == ">" else token for token in pattern.split("."))


T = TypeVar("T")


class Host(Protocol):
    """What topics need of their broker, so this module never imports it."""

    queue_arguments: dict[str, Any]

    async def open_channel(self) -> AsyncChannel: ...

    async def confirm_channel(self) -> ConfirmPublisher: ...

    async def admin(self, op: Callable[[AsyncChannel], Awaitable[T]]) -> T: ...


class RabbitMQTopics:
    def __init__(self, broker: Host) -> None:
        self.broker = broker
        self.live = EventsChannel(broker.open_channel, EXCHANGE)
        self._durables: set[Any] = set()  # each durable subscription's (re)start
        self._exchange_ready = False

    async def _exchange(self) -> None:
        if not self._exchange_ready:
            await self.live.channel()  # declares the exchange
            self._exchange_ready = True

    async def publish(self, topic: str, body: bytes) -> None:
        await self._exchange()
        with mapped(f"cannot publish on topic {topic}"):
            publisher = await self.broker.confirm_channel()
            await publisher.publish(topic, body, _PERSISTENT, EXCHANGE, mandatory=False)

    async def subscribe(self, pattern: str, callback: TopicCallback, durable: str | None) -> Unsubscribe:
        validate_pattern(pattern)
        if durable is not None:
            return await self._durable(pattern, callback, delivery.validate_durable_name(durable))

        async def filtered(body: bytes) -> None:
            await delivery.deliver_live(pattern, body, callback)

        return await self.live.subscribe(pattern, filtered)

    async def _durable(self, pattern: str, callback: TopicCallback, name: str) -> Unsubscribe:
        await self._exchange()
        queue = QUEUE_PREFIX + name
        inbox: asyncio.Queue[tuple[AsyncChannel, int, bytes]] = asyncio.Queue()
        current: list[tuple[AsyncChannel, str]] = []

        async def start() -> None:
            channel = await self.broker.open_channel()
            try:
                await channel.declare(queue, durable=True, arguments=self.broker.queue_arguments or None)
                await channel.rpc(
                    lambda cb: channel.raw.queue_bind(queue, EXCHANGE, binding_key(pattern), callback=cb)
                )
                await channel.qos(PREFETCH)

                def on_message(_ch: Any, method: Any, _props: Any, body: bytes) -> None:
                    inbox.put_nowait((channel, method.delivery_tag, body))

                current[:] = [(channel, await channel.consume(queue, on_message))]
            except BaseException:
                await channel.close()
                raise

        gate = delivery.Gate()

        async def pump() -> None:
            while not gate.stopping:  # what it has not taken goes back when its channel closes
                channel, tag, body = await inbox.get()
                if channel.closed is not None:
                    continue  # the server gives it again on the new channel
                async with gate.delivery():
                    await delivery.deliver_durable(pattern, body, callback, name)
                    channel.send(channel.raw.basic_ack, tag)

        with mapped(f"cannot subscribe durable topic subscription {name}"):
            await start()
        self._durables.add(start)
        task = delivery.watched(pump(), name)

        async def unsubscribe() -> None:
            self._durables.discard(start)
            await delivery.stop(task, gate)
            if current:
                channel, _tag = current.pop()
                await channel.close()  # what it held unacked goes back to the queue

        return unsubscribe

    async def restore(self) -> None:
        """After a reconnect: live subscriptions bound again, durable ones consuming again."""
        self._exchange_ready = False
        await self.live.restore()
        for start in list(self._durables):
            try:
                await start()
            except (BrokerError, ChannelClosed) as exc:
                log.warning("durable topic subscription not restored after the reconnect (%s)", exc)

    async def delete(self, durable: str) -> None:
        queue = QUEUE_PREFIX + delivery.validate_durable_name(durable)
        with mapped(f"cannot delete the durable topic subscription {durable}"):
            await self.broker.admin(lambda ch: ch.delete(queue))
