"""Topics on Redis: Pub/Sub for live subscriptions, one capped stream for durable ones.

A topic ``T`` is the channel ``orq:topico:T``; a pattern becomes a ``PSUBSCRIBE`` glob whose
``*`` also crosses dots, so deliveries are filtered by tokens (:mod:`orquestrador.topics.delivery`).
The live subscription reads on a connection of its own that reconnects by itself
(:mod:`.events`); Pub/Sub keeps nothing for a subscriber that is away.

What Redis can honestly offer for durable subscriptions is a stream: once a durable
subscription exists, every topic message is also appended to the stream ``orq:topicos``
(one Lua script with the ``PUBLISH``, so both or neither), capped at :data:`MAXLEN` entries
(approximately, ``MAXLEN ~``) for all topics together. A durable subscription is a consumer group
of that stream named after it, created at its first subscribe (from then on); each subscriber
filters the group's entries by its pattern and acks the others. A durable subscriber away for
longer than the cap lasts loses the oldest of its backlog; one that dies with a message in
flight gets it again after :data:`LEASE_MS` (``XAUTOCLAIM``). Without any durable subscription
the stream is deleted and a publish is only a ``PUBLISH``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Sequence
from typing import Any, Protocol

from orquestrador.brokers.base import TopicCallback, Unsubscribe
from orquestrador.brokers.redis import events
from orquestrador.brokers.redis.errors import DRIVER_ERRORS, ResponseError, is_nogroup, mapped
from orquestrador.brokers.redis.names import entry_body
from orquestrador.errors import BrokerError
from orquestrador.settings import redact_url
from orquestrador.topics import delivery
from orquestrador.topics.patterns import validate_pattern

log = logging.getLogger(__name__)

PREFIX = "orq:topico:"
STREAM = "orq:topicos"
MAXLEN = 100_000
LEASE_MS = 60_000
BATCH = 16
BATCH_MANY = 256  # topic messages per script call of publish_many
BLOCK_MS = 1000


class Host(Protocol):
    """What topics need of their broker, so this module never imports it."""

    url: str
    scripts: dict[str, Any]

    @property
    def redis(self) -> Any: ...


class RedisTopics:
    def __init__(self, broker: Host) -> None:
        self.broker = broker

    async def publish(self, topic: str, body: bytes) -> None:
        client = self.broker.redis  # not connected (or closed): an error, not a silent drop
        with mapped(f"cannot publish on topic {topic}"):
            await self.broker.scripts["topic"](
                keys=[STREAM], args=[body, MAXLEN, PREFIX + topic], client=client
            )

    async def publish_many(self, items: Sequence[tuple[str, bytes]]) -> int:
        """What :meth:`publish` does for each, in one script call per :data:`BATCH_MANY` (a
        command per message cost a worker copying its results onto topics more than its jobs)."""
        failed = 0
        for start in range(0, len(items), BATCH_MANY):
            chunk = items[start : start + BATCH_MANY]
            args: list[Any] = [MAXLEN]
            for topic, body in chunk:
                args += (PREFIX + topic, body)
            try:
                with mapped(f"cannot publish {len(chunk)} topic messages"):
                    script = self.broker.scripts["topic_many"]
                    await script(keys=[STREAM], args=args, client=self.broker.redis)
            except BrokerError as exc:
                log.debug("%d topic messages not published: %s", len(chunk), exc)
                failed += len(chunk)
        return failed

    async def subscribe(self, pattern: str, callback: TopicCallback, durable: str | None) -> Unsubscribe:
        validate_pattern(pattern)
        if durable is not None:
            return await self._durable(pattern, callback, delivery.validate_durable_name(durable))

        async def filtered(body: bytes) -> None:
            await delivery.deliver_live(pattern, body, callback)

        where = redact_url(self.broker.url)
        return await events.subscribe(self.broker.redis, pattern, filtered, where, prefix=PREFIX)

    async def _group(self, name: str) -> None:
        """The durable subscription's group, from now on if new (the backlog starts here)."""
        with mapped(f"cannot create the durable topic subscription {name}"):
            try:
                await self.broker.redis.xgroup_create(STREAM, name, "$", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def _durable(self, pattern: str, callback: TopicCallback, name: str) -> Unsubscribe:
        await self._group(name)
        consumer = uuid.uuid4().hex
        gate = delivery.Gate()
        task = delivery.watched(self._pump(pattern, callback, name, consumer, gate), name)

        async def unsubscribe() -> None:
            await delivery.stop(task, gate, drain=BLOCK_MS / 1000 + 2)
            await self._leave(name, consumer)

        return unsubscribe

    async def _pump(
        self, pattern: str, callback: TopicCallback, name: str, consumer: str, gate: delivery.Gate
    ) -> None:
        redis = self.broker.redis
        failures = 0
        while not gate.stopping:  # checked, not only cancelled: redis-py may swallow a cancel
            try:
                # Entries a dead subscriber of this name left in flight, then new ones.
                _next, entries, *_ = await redis.xautoclaim(STREAM, name, consumer, LEASE_MS, count=BATCH)
                if not entries:
                    got: Any = await redis.xreadgroup(
                        name, consumer, {STREAM: ">"}, count=BATCH, block=BLOCK_MS
                    )
                    entries = got[0][1] if got else []
                if failures:
                    log.warning("durable topic subscription %s receives again", name)
                    failures = 0
                for i, (entry_id, fields) in enumerate(entries):
                    if gate.stopping:
                        await self._release(name, consumer, [e[0] for e in entries[i:]])
                        return
                    async with gate.delivery():
                        await self._deliver(pattern, callback, name, consumer, entry_id, fields)
            except DRIVER_ERRORS as exc:
                if gate.stopping:
                    return
                failures += 1
                if is_nogroup(exc):  # deleted behind its back: it starts again from now
                    log.warning("durable topic subscription %s was deleted; created again", name)
                    with contextlib.suppress(BrokerError):
                        await self._group(name)
                elif failures in (1, 5) or failures % 20 == 0:
                    log.warning("durable topic subscription %s cannot read (%s); retrying", name, exc)
                await asyncio.sleep(min(0.2 * 2**failures, 5.0))

    async def _deliver(
        self, pattern: str, callback: TopicCallback, name: str, consumer: str, entry_id: Any, fields: Any
    ) -> None:
        redis = self.broker.redis

        async def keep_alive() -> None:  # not idle: no other subscriber claims it meanwhile
            with contextlib.suppress(*DRIVER_ERRORS):
                await redis.xclaim(STREAM, name, consumer, 0, [entry_id], justid=True)

        if fields:  # None: trimmed by the cap while pending
            await delivery.deliver_durable(pattern, entry_body(fields), callback, name, keep_alive=keep_alive)
        await redis.xack(STREAM, name, entry_id)

    async def _release(self, name: str, consumer: str, ids: list[Any]) -> None:
        """Entries read but not delivered: made idle for a lease, so the next subscriber of the
        name claims them at once (Redis cannot hand an entry back to the group)."""
        with contextlib.suppress(*DRIVER_ERRORS):
            await self.broker.redis.xclaim(STREAM, name, consumer, 0, ids, idle=LEASE_MS, justid=True)

    async def _leave(self, name: str, consumer: str) -> None:
        """Forget this subscriber's consumer unless it left a message in flight (claimed later)."""
        with contextlib.suppress(*DRIVER_ERRORS):
            pending = await self.broker.redis.xpending_range(STREAM, name, "-", "+", 1, consumername=consumer)
            if not pending:
                await self.broker.redis.xgroup_delconsumer(STREAM, name, consumer)

    async def delete(self, durable: str) -> None:
        name = delivery.validate_durable_name(durable)
        redis = self.broker.redis
        with mapped(f"cannot delete the durable topic subscription {name}"):
            try:
                await redis.xgroup_destroy(STREAM, name)
                left = await redis.xinfo_groups(STREAM)
            except ResponseError as exc:
                if "no such key" in str(exc).lower() or is_nogroup(exc):
                    return
                raise
            if not left:  # no durable subscription: publishing is a bare PUBLISH again
                await redis.delete(STREAM)
