"""The Redis broker: the client and its pool, publishing, queues, inspection and events (see
:mod:`orquestrador.brokers.redis` for the mapping)."""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis.asyncio as aioredis
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
    dlq_of,
)
from orquestrador.brokers.redis import events
from orquestrador.brokers.redis.consumer import RedisConsumer, RedisDelivery
from orquestrador.brokers.redis.errors import DRIVER_ERRORS, ResponseError, mapped, unreachable
from orquestrador.brokers.redis.names import (
    GROUP,
    QUEUES_KEY,
    dedup_key,
    delayed_key,
    entry_body,
    entry_fields,
    entry_headers,
    entry_position,
    stream_key,
    text,
)
from orquestrador.brokers.redis.scripts import SCRIPTS
from orquestrador.brokers.redis.slots import RedisSlots
from orquestrador.brokers.slots import Slots
from orquestrador.brokers.support.limits import DlqLimits
from orquestrador.brokers.tls import ssl_context
from orquestrador.errors import BrokerError, ConfigError
from orquestrador.settings import redact_url

log = logging.getLogger(__name__)

DEFAULT_MAXLEN = 1_000_000
DEDUP_SECONDS = 120
_STALE_CONSUMER_MS = 3_600_000  # consumers idle this long with nothing pending are forgotten


class RedisBroker(Broker):
    scheme = "redis"
    display_name = "Redis"
    # Redis reconnects inside each command: no count of its own.
    capabilities = Capabilities.lacking("counts_reconnects")

    def __init__(self, url: str, *, maxlen: int | None = None) -> None:
        super().__init__(url)
        parts = urlsplit(self.plain_url)
        query = dict(parse_qsl(parts.query))
        raw_maxlen = query.pop("maxlen", None)
        self._client_url = urlunsplit(parts._replace(query=urlencode(query)))
        chosen = maxlen if maxlen is not None else raw_maxlen
        self.maxlen = int(str(chosen)) if str(chosen).isdigit() else 0 if chosen else DEFAULT_MAXLEN
        if self.maxlen <= 0:
            raise ConfigError(f"invalid maxlen {chosen!r} in {redact_url(url)}: use a positive int")
        self._password = parts.password
        self.dlq = DlqLimits.from_env()
        self._redis: aioredis.Redis | None = None
        self._clock_offset_ms = 0.0
        self._subscriptions: set[Callable[[], Awaitable[None]]] = set()
        self.scripts: dict[str, Any] = {}

    @property
    def redis(self) -> aioredis.Redis:
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
        try:
            # A blocking pool: under load a command waits for a free connection instead of
            # failing with "Too many connections" (many jobs ack and publish at once).
            pool = aioredis.BlockingConnectionPool.from_url(
                self._client_url, max_connections=64, timeout=30, socket_connect_timeout=3,
                socket_timeout=10, health_check_interval=30, client_name="orquestrador", **tls,
            )  # fmt: skip
            client = aioredis.Redis.from_pool(pool)
            client.set_retry(Retry(ExponentialBackoff(cap=0.2, base=0.05), retries=1))
        except ValueError as exc:
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
        client.set_retry(Retry(ExponentialBackoff(cap=2.0, base=0.1), retries=8))  # ~10 s outages
        self._redis = client
        self.scripts = {name: client.register_script(src) for name, src in SCRIPTS.items()}  # EVALSHA

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
                    await self.redis.xgroup_create(stream_key(name), GROUP, "0", mkstream=True)
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
            await self._xadd(self.redis, queue, body, message_id, headers)

    async def _xadd(
        self, client: Any, queue: str, body: bytes, message_id: str | None,
        headers: dict[str, str] | None,
    ) -> Any:  # fmt: skip
        if not message_id:
            return await client.xadd(stream_key(queue), entry_fields(body, headers, None), maxlen=self.maxlen)
        # Idempotent within DEDUP_SECONDS: the dedup mark and the XADD are one atomic script.
        return await self.scripts["publish"](
            keys=[stream_key(queue), dedup_key(queue, message_id)],
            args=[self.maxlen, DEDUP_SECONDS, bytes(body), json.dumps(headers or {}), message_id],
            client=client,
        )

    async def ack_many(self, deliveries: Sequence[Delivery]) -> int:
        """XACK + XDEL of a whole batch in one MULTI/EXEC per stream: one round trip, not one each."""
        by_queue: dict[str, list[str]] = {}
        for delivery in deliveries:
            if not isinstance(delivery, RedisDelivery):
                raise TypeError(f"not a Redis delivery: {delivery!r}")
            by_queue.setdefault(delivery.queue, []).append(delivery.entry_id)
        if not by_queue:
            return 0
        try:
            with mapped("ack of a batch failed", nogroup_ok=True):
                async with self.redis.pipeline(transaction=True) as pipe:
                    for queue, ids in by_queue.items():
                        pipe.xack(stream_key(queue), GROUP, *ids)
                        pipe.xdel(stream_key(queue), *ids)
                    await pipe.execute()
        except BrokerError as exc:
            log.warning("acks of %d messages failed: %s", len(deliveries), exc)
            return len(deliveries)
        return 0

    async def publish_many(
        self, queue: str, items: Iterable[tuple[bytes, str | None]], *, window: int = 256
    ) -> int:
        """Pipelined: ``window`` XADDs per round trip instead of one connection per message."""
        await self.declare(queue)
        count, it = 0, iter(items)
        while chunk := list(itertools.islice(it, max(1, window))):
            with mapped(f"publish to {queue} failed"):
                async with self.redis.pipeline(transaction=False) as pipe:
                    for body, message_id in chunk:
                        await self._xadd(pipe, queue, body, message_id, None)
                    await pipe.execute()
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
            return int(await self.scripts["reap"](keys=[stream_key(queue)], args=[GROUP, min_idle_ms, name]))

    async def stats(self, queue: str) -> QueueStats:
        await self.declare(queue, force=True)  # also repairs a group deleted behind our back
        key = stream_key(queue)
        is_dlq = queue.endswith(DLQ_SUFFIX)
        with mapped(f"cannot read stats of {queue}"):
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.xlen(key)
                pipe.zcard(delayed_key(queue))
                pipe.xlen(stream_key(dlq_of(queue)))
                pipe.xpending(key, GROUP)
                pipe.xinfo_groups(key)
                pipe.xrange(key, count=1)
                pipe.time()
                length, delayed, dead, pending, groups, first, now = await pipe.execute()
        in_flight = int(pending["pending"])
        consumers = next((g["consumers"] for g in groups if text(g["name"]) == GROUP), 0)
        oldest = None
        if first:
            born_ms = int(text(first[0][0]).split("-")[0])
            oldest = max(0.0, (now[0] * 1000 + now[1] / 1000 - born_ms) / 1000)
        return QueueStats(
            queue=queue,
            depth=max(0, length - in_flight) + delayed,
            in_flight=in_flight,
            dead_letters=0 if is_dlq else dead,
            consumers=consumers,
            oldest_age=oldest,
        )

    async def dead_letter_snapshot(self, queue: str) -> tuple[int, tuple[int, ...] | None]:
        key = stream_key(dlq_of(queue))
        await self.declare(queue)
        with mapped(f"cannot read the dead letters of {queue}"):
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.xlen(key)
                pipe.xrevrange(key, count=1)
                count, newest = await pipe.execute()
        return count, entry_position(text(newest[0][0])) if newest else (0, 0)

    async def peek(self, queue: str, limit: int = 10) -> list[Message]:
        with mapped(f"cannot peek {queue}"):
            entries: Any = await self.redis.xrange(stream_key(queue), count=max(1, limit))
        return [Message(entry_body(f), entry_headers(f), text(i)) for i, f in entries if f is not None]

    async def purge(self, queue: str) -> int:
        await self.declare(queue)
        dkey = delayed_key(queue)
        with mapped(f"cannot purge {queue}"):
            keys = [stream_key(queue), dkey, dkey + ":msgs"]
            return int(await self.scripts["purge"](keys=keys, args=[GROUP]))

    async def delete(self, queue: str) -> None:
        for name in (queue, dlq_of(queue)):
            self.forget(name)
            with mapped(f"cannot delete {name}"):
                dkey = delayed_key(name)
                await self.redis.delete(stream_key(name), dkey, dkey + ":msgs")
                await self.redis.srem(QUEUES_KEY, name)
                async for dedup in self.redis.scan_iter(match=f"orq:dedup:{name}:*", count=500):
                    await self.redis.delete(dedup)

    async def queues(self) -> list[str]:
        with mapped("cannot list queues"):
            return sorted(text(n) for n in await self.redis.smembers(QUEUES_KEY))

    def slots(self) -> Slots:
        return RedisSlots(self)

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
