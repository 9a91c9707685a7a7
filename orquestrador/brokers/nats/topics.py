"""Topics on NATS: core subjects for live subscriptions, a JetStream stream for durable ones.

A topic ``T`` is the subject ``orq.topico.T``: queue subjects (``fila``, ``fila.dlq``) and the
lifecycle events (``orq.eventos``) never fall under it, and NATS's wildcards are the toolkit's
(``*`` one token, ``>`` the rest), so a pattern maps one to one.

Every topic message is published through JetStream into the stream ``ORQ-TOPICOS`` (subjects
``orq.topico.>``, interest retention, file storage): the publish returns once the server
stored it (an unreachable server is a :class:`~orquestrador.errors.BrokerError`), live
subscribers get it as any core message, and the stream keeps it only while a durable consumer
still has to ack it (with no durable subscription nothing is kept), for at most
:data:`MAX_AGE`. A durable subscription is a durable pull consumer named after it, filtered to
the pattern's subject, created at its first subscribe (``DeliverPolicy.NEW``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Sequence
from typing import Protocol

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from orquestrador.brokers.base import TOPIC_SUBJECT_PREFIX, TopicCallback, Unsubscribe
from orquestrador.brokers.nats.errors import BadRequest, DriverError, FetchTimeout, NotFound, mapped, quietly
from orquestrador.errors import BrokerError, TopicError
from orquestrador.topics import delivery
from orquestrador.topics.patterns import validate_pattern

log = logging.getLogger("orquestrador.brokers.nats")

PREFIX = TOPIC_SUBJECT_PREFIX
STREAM = "ORQ-TOPICOS"  # not "ORQ_…": those are the queues' streams (broker.queues())
MAX_AGE = 7 * 24 * 3600.0  # a durable subscription's backlog older than this is dropped
ACK_WAIT = 60.0
BATCH = 16
FETCH_WAIT = 1.0


class Host(Protocol):
    """What topics need of their broker, so this module never imports it."""

    replicas: int
    request_timeout: float

    @property
    def client(self) -> Client: ...

    @property
    def js(self) -> JetStreamContext: ...


class NatsTopics:
    def __init__(self, broker: Host) -> None:
        self.broker = broker
        self._stream_ready = False
        self._lock = asyncio.Lock()

    def forget(self) -> None:
        """After a reconnect: the stream is declared again on the next use (a new server may lack it)."""
        self._stream_ready = False

    async def _stream(self) -> None:
        if self._stream_ready:
            return
        async with self._lock:
            if self._stream_ready:
                return
            config = api.StreamConfig(
                name=STREAM,
                subjects=[PREFIX + ">"],
                retention=api.RetentionPolicy.INTEREST,
                storage=api.StorageType.FILE,
                num_replicas=self.broker.replicas,
                max_age=MAX_AGE,
                duplicate_window=120.0,
            )
            with mapped(f"cannot declare the topics stream {STREAM}"):
                try:
                    await self.broker.js.add_stream(config)
                except BadRequest as exc:  # exists with other settings: used as it is
                    log.warning("stream %s exists with other settings: %s", STREAM, exc)
            self._stream_ready = True

    async def publish(self, topic: str, body: bytes) -> None:
        await self._stream()
        try:
            with mapped(f"cannot publish on topic {topic}"):
                await self.broker.js.publish(
                    PREFIX + topic, body, stream=STREAM, timeout=self.broker.request_timeout
                )
        except TimeoutError:
            raise BrokerError(
                f"cannot publish on topic {topic}: NATS did not confirm it within "
                f"{self.broker.request_timeout:g} s; is the server reachable?"
            ) from None

    async def publish_many(self, items: Sequence[tuple[str, bytes]]) -> int:
        """A batch as core publishes and one flush: the stream still stores each (its subjects
        capture core messages too), without a PubAck round trip per message. What workers copy
        onto topics (best effort, like lifecycle events) goes this way."""
        await self._stream()
        nc = self.broker.client
        try:
            with mapped(f"cannot publish {len(items)} topic messages"):
                for topic, body in items:
                    await nc.publish(PREFIX + topic, body)
                await nc.flush(timeout=int(self.broker.request_timeout))
        except (BrokerError, TimeoutError) as exc:
            log.debug("%d topic messages not confirmed: %s", len(items), exc)
            return len(items)
        return 0

    async def subscribe(self, pattern: str, callback: TopicCallback, durable: str | None) -> Unsubscribe:
        validate_pattern(pattern)
        if durable is not None:
            return await self._durable(pattern, callback, delivery.validate_durable_name(durable))
        nc = self.broker.client

        async def handler(msg: Msg) -> None:
            await delivery.deliver_live(pattern, msg.data, callback)

        with mapped(f"cannot subscribe to topics {pattern}"):
            sub = await nc.subscribe(PREFIX + pattern, cb=handler)
            await nc.flush(timeout=int(self.broker.request_timeout))  # the server has it: nothing missed

        async def unsubscribe() -> None:
            await quietly(sub.unsubscribe())

        return unsubscribe

    async def _durable(self, pattern: str, callback: TopicCallback, name: str) -> Unsubscribe:
        await self._stream()
        js = self.broker.js
        config = api.ConsumerConfig(
            durable_name=name,
            filter_subject=PREFIX + pattern,
            ack_policy=api.AckPolicy.EXPLICIT,
            deliver_policy=api.DeliverPolicy.NEW,
            ack_wait=ACK_WAIT,
            max_deliver=-1,
        )
        with mapped(f"cannot create the durable topic subscription {name}"):
            try:
                info = await js.consumer_info(STREAM, name)
            except NotFound:
                await js.add_consumer(STREAM, config)
            else:
                if info.config.filter_subject != config.filter_subject:  # the latest pattern wins
                    try:
                        await js.add_consumer(
                            STREAM, dataclasses.replace(info.config, filter_subject=config.filter_subject)
                        )
                    except BadRequest as exc:
                        raise TopicError(
                            f"durable subscription {name!r} follows another pattern and NATS refused to "
                            f"change it to {pattern!r} ({exc}): delete_subscription({name!r}) first"
                        ) from None
            sub = await js.pull_subscribe_bind(durable=name, stream=STREAM)
        gate = delivery.Gate()
        task = delivery.watched(self._pump(sub, pattern, callback, name, gate), name)

        async def unsubscribe() -> None:
            await delivery.stop(task, gate, drain=FETCH_WAIT + 2)
            await quietly(sub.unsubscribe())

        return unsubscribe

    async def _pump(
        self,
        sub: JetStreamContext.PullSubscription,
        pattern: str,
        callback: TopicCallback,
        name: str,
        gate: delivery.Gate,
    ) -> None:
        failures = 0
        while not gate.stopping:
            try:
                msgs: list[Msg] = await sub.fetch(BATCH, timeout=FETCH_WAIT)
            except FetchTimeout:
                continue
            except DriverError as exc:
                failures += 1
                if failures in (1, 5) or failures % 20 == 0:
                    log.warning("durable topic subscription %s cannot fetch (%s); retrying", name, exc)
                await asyncio.sleep(min(0.2 * 2**failures, 5.0))
                continue
            if failures:
                log.warning("durable topic subscription %s receives again", name)
                failures = 0
            for i, msg in enumerate(msgs):
                if gate.stopping:  # the rest go back at once, to the next subscriber of the name
                    for rest in msgs[i:]:
                        await quietly(rest.nak())
                    return
                async with gate.delivery():
                    await quietly(msg.in_progress())  # its ack wait starts now, not at the fetch
                    await delivery.deliver_durable(
                        pattern, msg.data, callback, name, keep_alive=msg.in_progress
                    )
                    await quietly(msg.ack_sync(timeout=self.broker.request_timeout))

    async def delete(self, durable: str) -> None:
        name = delivery.validate_durable_name(durable)
        await self._stream()
        with mapped(f"cannot delete the durable topic subscription {name}"), contextlib.suppress(NotFound):
            await self.broker.js.delete_consumer(STREAM, name)
