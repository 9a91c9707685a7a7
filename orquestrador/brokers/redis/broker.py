"""The Redis broker: the client and its pool, publishing, queues, inspection and events (see
:mod:`orquestrador.brokers.redis` for the mapping)."""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, cast
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from orquestrador.brokers.base import (
    DLQ_SUFFIX,
    Broker,
    Capabilities,
    Consumer,
    Delivery,
    EventCallback,
    Message,
    QueueStats,
    TopicCallback,
    Unsubscribe,
    dlq_of,
)
from orquestrador.brokers.redis import events
from orquestrador.brokers.redis.cluster import Replication, cluster_client, cluster_option, ride_out
from orquestrador.brokers.redis.consumer import RedisConsumer, RedisDelivery
from orquestrador.brokers.redis.errors import DRIVER_ERRORS, ResponseError, mapped, unreachable
from orquestrador.brokers.redis.names import (
    GROUP,
    QUEUES_KEY,
    Keys,
    entry_body,
    entry_fields,
    entry_headers,
    entry_position,
    text,
)
from orquestrador.brokers.redis.scripts import bind, run_pipeline
from orquestrador.brokers.redis.shared import RedisState
from orquestrador.brokers.redis.slots import RedisSlots
from orquestrador.brokers.redis.topics import RedisTopics
from orquestrador.brokers.shared import SharedState
from orquestrador.brokers.slots import Slots
from orquestrador.brokers.support.limits import DlqLimits
from orquestrador.brokers.tls import ssl_context
from orquestrador.errors import BrokerError, ConfigError
from orquestrador.settings import int_option, parse_duration, pop_url_options, redact_url, seeds

log = logging.getLogger(__name__)

DEFAULT_MAXLEN = 1_000_000
DEDUP_SECONDS = 120
_STALE_CONSUMER_MS = 3_600_000  # consumers idle this long with nothing pending are forgotten
_OPTIONS = ("maxlen", "cluster", "wait_replicas", "wait_timeout")  # the toolkit's, not redis-py's


class RedisBroker(Broker):
    scheme = "redis"
    display_name = "Redis"
    # Redis reconnects inside each command: no count of its own.
    capabilities = Capabilities.lacking("counts_reconnects")

    def __init__(self, url: str, *, maxlen: int | None = None) -> None:
        super().__init__(url)
        parts = urlsplit(self.plain_url)
        self._client_url, options = pop_url_options(self.plain_url, _OPTIONS)
        chosen = maxlen if maxlen is not None else options.get("maxlen")
        self.maxlen = int(str(chosen)) if str(chosen).isdigit() else 0 if chosen else DEFAULT_MAXLEN
        if self.maxlen <= 0:
            raise ConfigError(f"invalid maxlen {chosen!r} in {redact_url(url)}: use a positive int")
        self.clustered = cluster_option(url, options.get("cluster", ""), len(seeds(parts.netloc)))
        self.keys = Keys(self.clustered)
        # A cluster's replication is asynchronous: publishes wait for one replica there by default.
        replicas = int_option(url, "wait_replicas", options.get("wait_replicas"), int(self.clustered), 0, 16)
        timeout = parse_duration(options.get("wait_timeout", "1"), f"?wait_timeout in {redact_url(url)}")
        self.replication = Replication(replicas, timeout)
        self._password = parts.password
        self.dlq = DlqLimits.from_env()
        self._redis: aioredis.Redis | None = None
        self._clock_offset_ms = 0.0
        self._subscriptions: set[Callable[[], Awaitable[None]]] = set()
        self.scripts: dict[str, Any] = {}
        self._topics = RedisTopics(self)

    @property
    def redis(self) -> aioredis.Redis:
        """The client: a ``redis.asyncio.RedisCluster`` on a cluster URL (same commands)."""
        if self._redis is None:
            raise self.not_connected()
        return self._redis

    def server_ms(self) -> int:
        """Now on the server's clock, so delayed retries are due by one clock for all hosts."""
        return int(time.time() * 1000 + self._clock_offset_ms)

    async def connect(self) -> None:
        if self._redis is not None:
            return
        where = redact_url(self.url)
        tls: dict[str, Any] = {}
        if self.tls is not None:
            ssl_context(self.tls)  # refuses bad files with the setting's name
            tls = {"ssl_ca_certs": self.tls.ca, "ssl_certfile": self.tls.cert, "ssl_keyfile": self.tls.key}
        common = {"socket_connect_timeout": 3, "socket_timeout": 10, "health_check_interval": 30,
                  "client_name": "orquestrador", **tls}  # fmt: skip
        try:
            if self.clustered:  # per node; nodes are found from any seed of the URL
                client: Any = cluster_client(self._client_url, max_connections=256, **common)
            else:
                # A blocking pool: under load a command waits for a free connection instead of
                # failing with "Too many connections" (many jobs ack and publish at once).
                pool = aioredis.BlockingConnectionPool.from_url(
                    self._client_url, max_connections=64, timeout=30, **common
                )
                client = aioredis.Redis.from_pool(pool)
                client.set_retry(Retry(ExponentialBackoff(cap=0.2, base=0.05), retries=1))
        except (ValueError, TypeError) as exc:  # TypeError: an unknown ?option= (cluster)
            raise ConfigError(f"invalid Redis URL {where}: {self._scrub(exc)}") from None
        try:
            before = time.time()
            seconds, micros = await client.time()
            self._clock_offset_ms = seconds * 1000 + micros / 1000 - (before + time.time()) * 500
        except TypeError as exc:  # an unknown ?option= reaches the connection class
            await client.aclose()
            raise ConfigError(f"unsupported option in Redis URL {where}: {self._scrub(exc)}") from None
        except DRIVER_ERRORS as exc:
            await client.aclose()
            raise unreachable(exc, where, self._scrub(exc)) from None
        if not self.clustered:  # a cluster client pauses between its own retries (cluster.py)
            client.set_retry(Retry(ExponentialBackoff(cap=2.0, base=0.1), retries=8))  # ~10 s outages
        self._redis = client
        self.scripts = bind(client, self.clustered)

    def _scrub(self, exc: BaseException) -> str:
        text = " ".join(str(exc).split()) or type(exc).__name__  # always one line
        return text.replace(self._password, "***") if self._password else text

    async def close(self) -> None:
        for unsubscribe in list(self._subscriptions):
            await unsubscribe()
        if self._redis is not None:
            with contextlib.suppress(*DRIVER_ERRORS):
                await self._redis.aclose()
        self._redis = None

    async def declare(self, queue: str, *, force: bool = False) -> None:
        """``force``: create them again even if this connection did (a group deleted behind its back)."""
        if force:
            self.forget(queue)
            self.forget(dlq_of(queue))
        await super().declare(queue)

    async def _declare_new(self, names: list[str]) -> None:
        """The streams and groups of ``names`` (group from id 0: keep the backlog)."""
        for name in names:
            with mapped(f"cannot declare {name}"):
                try:
                    await self.redis.xgroup_create(self.keys.stream(name), GROUP, "0", mkstream=True)
                except ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise
                await self.redis.sadd(QUEUES_KEY, name)

    async def publish(
        self,
        queue: str,
        body: bytes,
        *,
        message_id: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        await self.declare(queue)
        with mapped(f"publish to {queue} failed"):
            await self._publish_batch(queue, [(body, message_id, headers)])

    async def _publish_batch(
        self, queue: str, batch: Sequence[tuple[bytes, str | None, dict[str, str] | None]]
    ) -> None:
        """One round trip; with ``wait_replicas`` the WAIT follows the writes on their connection.
        On a cluster a failover of the queue's master is waited for (a message_id makes the
        repeat harmless; without one, a repeat after a lost reply may add a copy)."""
        if self.clustered:
            await ride_out(cast(RedisCluster, self.redis), lambda: self._publish_once(queue, batch))
        else:
            await self._publish_once(queue, batch)

    async def _publish_once(
        self, queue: str, batch: Sequence[tuple[bytes, str | None, dict[str, str] | None]]
    ) -> None:
        cluster = cast(RedisCluster, self.redis) if self.clustered else None
        node = cluster.get_node_from_key(self.keys.stream(queue)) if cluster is not None else None
        name = node.name if node is not None else ""
        wait = self.replication.wanted(name)
        if len(batch) == 1 and not wait:
            await self._xadd(self.redis, queue, *batch[0])
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for body, message_id, headers in batch:
                await self._xadd(pipe, queue, body, message_id, headers)
            if wait:
                self.replication.add(pipe, node)
            replies = await run_pipeline(pipe)
        if wait:
            self.replication.check(replies[-1], name, queue)

    async def _xadd(
        self, client: Any, queue: str, body: bytes, message_id: str | None,
        headers: dict[str, str] | None,
    ) -> Any:  # fmt: skip
        key = self.keys.stream(queue)
        if not message_id:
            queued = client.xadd(key, entry_fields(body, headers, None), maxlen=self.maxlen)
            # A pipeline only queues it (and awaiting a cluster pipeline would empty it).
            return await queued if client is self._redis else queued
        # Idempotent within DEDUP_SECONDS: the dedup mark and the XADD are one atomic script.
        return await self.scripts["publish"](
            keys=[key, self.keys.dedup(queue, message_id)],
            args=[self.maxlen, DEDUP_SECONDS, bytes(body), json.dumps(headers or {}), message_id],
            client=client,
        )

    async def ack_many(self, deliveries: Sequence[Delivery]) -> int:
        """XACK + XDEL of a whole batch in one script per stream: one round trip, not one each."""
        by_queue: dict[str, list[str]] = {}
        for delivery in deliveries:
            if not isinstance(delivery, RedisDelivery):
                raise TypeError(f"not a Redis delivery: {delivery!r}")
            by_queue.setdefault(delivery.queue, []).append(delivery.entry_id)
        failed = 0
        for queue, ids in by_queue.items():
            for start in range(0, len(ids), 1000):  # Lua's unpack() has a limit
                chunk = ids[start : start + 1000]
                try:
                    with mapped(f"ack of a batch on {queue} failed", nogroup_ok=True):
                        await self.scripts["ack"](keys=[self.keys.stream(queue)], args=[GROUP, *chunk])
                except BrokerError as exc:
                    log.warning("acks of %d messages failed: %s", len(chunk), exc)
                    failed += len(chunk)
        return failed

    async def publish_many(
        self, queue: str, items: Iterable[tuple[bytes, str | None]], *, window: int = 256
    ) -> int:
        """Pipelined: ``window`` XADDs per round trip instead of one connection per message."""
        await self.declare(queue)
        count, it = 0, iter(items)
        while chunk := list(itertools.islice(it, max(1, window))):
            with mapped(f"publish to {queue} failed"):
                await self._publish_batch(queue, [(body, message_id, None) for body, message_id in chunk])
            count += len(chunk)
        return count

    async def consume(self, queue: str, *, visibility_timeout: float = 30.0, prefetch: int = 16) -> Consumer:
        await self.declare(queue)
        with contextlib.suppress(BrokerError):  # housekeeping only
            await self.reap(queue, min_idle_ms=_STALE_CONSUMER_MS)
        return RedisConsumer(self, queue, visibility_timeout)

    async def reap(self, queue: str, *, min_idle_ms: int, name: str = "") -> int:
        """Forget group consumers with nothing pending, so ``consumers`` counts live ones."""
        with mapped(f"cannot clean consumers of {queue}"):
            keys = [self.keys.stream(queue)]
            return int(await self.scripts["reap"](keys=keys, args=[GROUP, min_idle_ms, name]))

    async def stats(self, queue: str) -> QueueStats:
        await self.declare(queue, force=True)  # also repairs a group deleted behind our back
        key = self.keys.stream(queue)
        is_dlq = queue.endswith(DLQ_SUFFIX)
        with mapped(f"cannot read stats of {queue}"):
            async with self._snapshot() as pipe:
                pipe.xlen(key)
                pipe.zcard(self.keys.delayed(queue))
                pipe.xlen(self.keys.stream(dlq_of(queue)))
                pipe.xpending(key, GROUP)
                pipe.xinfo_groups(key)
                pipe.xrange(key, count=1)
                length, delayed, dead, pending, groups, first = await pipe.execute()
        in_flight = int(pending["pending"])
        consumers = next((g["consumers"] for g in groups if text(g["name"]) == GROUP), 0)
        oldest = None
        if first:
            born_ms = int(text(first[0][0]).split("-")[0])
            oldest = max(0.0, (self.server_ms() - born_ms) / 1000)
        return QueueStats(
            queue=queue,
            depth=max(0, length - in_flight) + delayed,
            in_flight=in_flight,
            dead_letters=0 if is_dlq else dead,
            consumers=consumers,
            oldest_age=oldest,
        )

    def _snapshot(self) -> Any:
        """A pipeline of reads of one queue: MULTI/EXEC on one server; on a cluster a plain one
        (the keys share a slot, so it is one round trip to one node all the same)."""
        return self.redis.pipeline(transaction=not self.clustered)

    async def dead_letter_snapshot(self, queue: str) -> tuple[int, tuple[int, ...] | None]:
        key = self.keys.stream(dlq_of(queue))
        await self.declare(queue)
        with mapped(f"cannot read the dead letters of {queue}"):
            async with self._snapshot() as pipe:
                pipe.xlen(key)
                pipe.xrevrange(key, count=1)
                count, newest = await pipe.execute()
        return count, entry_position(text(newest[0][0])) if newest else (0, 0)

    async def peek(self, queue: str, limit: int = 10) -> list[Message]:
        with mapped(f"cannot peek {queue}"):
            entries: Any = await self.redis.xrange(self.keys.stream(queue), count=max(1, limit))
        return [Message(entry_body(f), entry_headers(f), text(i)) for i, f in entries if f is not None]

    async def purge(self, queue: str) -> int:
        await self.declare(queue)
        dkey = self.keys.delayed(queue)
        with mapped(f"cannot purge {queue}"):
            keys = [self.keys.stream(queue), dkey, dkey + ":msgs"]
            return int(await self.scripts["purge"](keys=keys, args=[GROUP]))

    async def delete(self, queue: str) -> None:
        for name in (queue, dlq_of(queue)):
            self.forget(name)
            with mapped(f"cannot delete {name}"):
                dkey = self.keys.delayed(name)
                await self.redis.delete(self.keys.stream(name), dkey, dkey + ":msgs")
                await self.redis.srem(QUEUES_KEY, name)
                async for dedup in self.redis.scan_iter(match=self.keys.dedup(name, "*"), count=500):
                    await self.redis.delete(dedup)

    async def queues(self) -> list[str]:
        with mapped("cannot list queues"):
            return sorted(text(n) for n in await self.redis.smembers(QUEUES_KEY))

    def slots(self) -> Slots:
        return RedisSlots(self)

    def shared_state(self) -> SharedState:
        return RedisState(self)

    async def publish_event(self, subject: str, body: bytes) -> None:
        if self._redis is None:
            return
        try:
            await self._redis.publish(events.PREFIX + subject, body)
        except DRIVER_ERRORS as exc:
            log.debug("event not sent: %s", exc)

    async def subscribe_events(self, subject: str, callback: EventCallback) -> Callable[[], Awaitable[None]]:
        """Redis pub/sub; NATS wildcards (``*``, ``>``) become a glob pattern (see :mod:`.events`)."""
        stop = await events.subscribe(self.redis, subject, callback, redact_url(self.url))

        async def unsubscribe() -> None:
            self._subscriptions.discard(unsubscribe)
            await stop()

        self._subscriptions.add(unsubscribe)
        return unsubscribe

    # -- topics (topics.py) ------------------------------------------------------------------

    async def publish_topic(self, topic: str, body: bytes) -> None:
        await self._topics.publish(topic, body)

    async def publish_topics(self, items: Sequence[tuple[str, bytes]]) -> int:
        return await self._topics.publish_many(items)

    async def subscribe_topic(
        self, pattern: str, callback: TopicCallback, *, durable: str | None = None
    ) -> Unsubscribe:
        unsubscribe = await self._topics.subscribe(pattern, callback, durable)

        async def stop() -> None:
            self._subscriptions.discard(stop)
            await unsubscribe()

        self._subscriptions.add(stop)
        return stop

    async def delete_subscription(self, durable: str) -> None:
        await self._topics.delete(durable)
