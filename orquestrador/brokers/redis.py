"""Redis Streams adapter (redis-py asyncio).

Mapping: each queue is a stream ``orq:q:<queue>`` with one consumer group, ``workers``, shared
by every worker of the queue; every Consumer object is a group consumer with a unique name.
An entry holds the body in field ``b``, JSON headers in ``h``, the publisher's message id in
``id`` and the attempts already spent by earlier copies in ``a``. Declared names live in the set
``orq:queues``. ``publish`` returns after the XADD reply and trims with ``MAXLEN ~`` (default
1,000,000; ``?maxlen=`` in the URL or ``maxlen=``); with a message id it is idempotent for 120 s.

``fetch`` runs one loop: move due delayed retries into the stream, XAUTOCLAIM entries idle
longer than the visibility timeout (a killed worker's jobs), then XREADGROUP ``>`` with a short
BLOCK. The attempt is ``a`` plus the entry's delivery count from the pending list. ``ack`` is
XACK + XDEL in one MULTI/EXEC, so a stream only holds its backlog. ``heartbeat`` re-claims the
entry to its own consumer (resetting its idle time) and ``nack()`` back-dates it so the next
XAUTOCLAIM takes it at once; both only act while this delivery still owns the entry.
``nack(delay)`` writes the copy to the sorted set ``orq:delayed:<queue>`` (scored by the
server-clock due time; fields in hash ``orq:delayed:<queue>:msgs``) and acks the original in
one MULTI/EXEC; a Lua script moves due copies into the stream atomically, so no two consumers
move one twice. Consumers of one queue should share one visibility timeout: it is the idle time
after which *any* consumer reclaims an entry. Standalone Redis only (keys span hash slots).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis.asyncio as aioredis
import redis.exceptions as rexc
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
    dead_letter_headers,
    dlq_of,
    validate_queue_name,
)
from orquestrador.brokers.intake import FieldReader
from orquestrador.brokers.slots import Slots
from orquestrador.brokers.support.limits import DlqLimits
from orquestrador.brokers.tls import ssl_context, tls_failure
from orquestrador.errors import BrokerError, BrokerUnavailable, ConfigError
from orquestrador.settings import redact_url, split_tls

log = logging.getLogger(__name__)

GROUP = "workers"
QUEUES_KEY = "orq:queues"
DEFAULT_MAXLEN = 1_000_000
DEDUP_SECONDS = 120
_STALE_CONSUMER_MS = 3_600_000  # consumers idle this long with nothing pending are forgotten

_RESERVE_SLOT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local slot = tonumber(redis.call('GET', KEYS[1]) or '0')
if slot < now then slot = now end
local interval = tonumber(ARGV[1])
redis.call('SET', KEYS[1], slot + interval, 'PX', interval + 60000)
return slot - now
"""

_MOVE_DUE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
for _, tok in ipairs(due) do
  local f = redis.call('HMGET', KEYS[2], tok .. ':b', tok .. ':h', tok .. ':i', tok .. ':a')
  if f[1] then
    local a = {KEYS[3], 'MAXLEN', '~', ARGV[1], '*', 'b', f[1], 'h', f[2] or '{}', 'a', f[4] or '0'}
    if f[3] then a[#a + 1] = 'id'; a[#a + 1] = f[3] end
    redis.call('XADD', unpack(a))
  end
  redis.call('HDEL', KEYS[2], tok .. ':b', tok .. ':h', tok .. ':i', tok .. ':a')
  redis.call('ZREM', KEYS[1], tok)
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if nxt[2] then return {#due, math.max(0, tonumber(nxt[2]) - now)} end
return {#due, -1}
"""
# Re-claim an entry to its owner (heartbeat; TIME 1 = back-dated for nack) only while this
# delivery still holds it: same consumer and same delivery count.
_RECLAIM_OWN = """
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #p == 0 or p[1][2] ~= ARGV[3] or tonumber(p[1][4]) ~= tonumber(ARGV[4]) then return 0 end
if ARGV[5] == '1' then
  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, ARGV[2], 'TIME', 1, 'JUSTID')
else
  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, ARGV[2], 'JUSTID')
end
return 1
"""
_PUBLISH_ONCE = """
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[2]) then
  return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'b', ARGV[3], 'h', ARGV[4],
                    'id', ARGV[5])
end
return false
"""
# Forget consumers with nothing pending (atomically, so no entry can be orphaned).
_REAP = """
local n = 0
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local f = {}
  for i = 1, #c, 2 do f[c[i]] = c[i + 1] end
  if tonumber(f['pending']) == 0 and tonumber(f['idle']) >= tonumber(ARGV[2])
     and (ARGV[3] == '' or f['name'] == ARGV[3]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], f['name'])
    n = n + 1
  end
end
return n
"""
# Drop waiting entries (never delivered or delayed); entries in flight stay with their workers.
_PURGE = """
local dropped = redis.call('ZCARD', KEYS[2])
redis.call('DEL', KEYS[2], KEYS[3])
local s = redis.pcall('XPENDING', KEYS[1], ARGV[1])
if type(s) ~= 'table' or s.err or s[1] == 0 then
  dropped = dropped + redis.call('XLEN', KEYS[1])
  redis.call('XTRIM', KEYS[1], 'MAXLEN', 0)
  return dropped
end
local busy = {}
for _, p in ipairs(redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', s[1])) do busy[p[1]] = true end
local start = '-'
while true do
  local batch = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', 1000)
  for _, e in ipairs(batch) do
    if not busy[e[1]] then redis.call('XDEL', KEYS[1], e[1]); dropped = dropped + 1 end
  end
  if #batch < 1000 then return dropped end
  start = '(' .. batch[#batch][1]
end
"""


def stream_key(queue: str) -> str:
    return "orq:q:" + validate_queue_name(queue)


def delayed_key(queue: str) -> str:
    return "orq:delayed:" + validate_queue_name(queue)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _is_nogroup(exc: BaseException) -> bool:
    return isinstance(exc, rexc.ResponseError) and "NOGROUP" in str(exc)  # also inside pipelines


@contextlib.contextmanager
def _errors(what: str, *, nogroup_ok: bool = False) -> Iterator[None]:
    """Translate driver exceptions at the boundary, so callers catch one family.

    ``nogroup_ok``: the queue was purged or deleted meanwhile, so there is nothing to settle.
    """
    try:
        yield
    except (rexc.ConnectionError, rexc.TimeoutError, OSError) as exc:
        raise BrokerUnavailable(f"{what}: lost the Redis connection ({exc})") from exc
    except rexc.RedisError as exc:
        if not (nogroup_ok and _is_nogroup(exc)):
            raise BrokerError(f"{what}: {exc}") from exc


def _fields(body: bytes, headers: dict[str, str] | None, message_id: str | None) -> dict[str, Any]:
    fields: dict[str, Any] = {"b": bytes(body)}
    if headers:
        fields["h"] = json.dumps(headers)
    if message_id:
        fields["id"] = message_id
    return fields


def _body(fields: dict[bytes, bytes]) -> bytes:
    # ``b`` is ours; an entry XADDed by hand with a single field of any name is a job too.
    return fields[b"b"] if b"b" in fields else next(iter(fields.values()), b"")


def _headers(fields: dict[bytes, bytes], reader: FieldReader | None = None) -> dict[str, str]:
    return (reader or FieldReader()).headers_json(fields.get(b"h"), "headers field 'h'")


def _position(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class RedisDelivery(Delivery):
    def __init__(
        self, consumer: RedisConsumer, entry_id: str, fields: dict[bytes, bytes], delivered: int
    ) -> None:
        self._consumer = consumer
        self._broker = consumer.broker
        self._id = entry_id
        self._delivered = delivered
        self.queue = consumer.queue
        self.body = _body(fields)
        # Entries can be XADDed by anyone: every field is read like a body (brokers.intake).
        reader = FieldReader()
        self.headers = _headers(fields, reader)
        self.attempt = reader.count(fields.get(b"a"), "attempts field 'a'") + delivered
        self.message_id = reader.text(fields.get(b"id"), "id field")
        self.problem = reader.problem
        self.position = _position(entry_id)

    async def _settle(self, what: str, pipe: Any) -> None:
        pipe.xack(stream_key(self.queue), GROUP, self._id)
        pipe.xdel(stream_key(self.queue), self._id)
        with _errors(f"{what} on {self.queue} failed", nogroup_ok=True):
            await pipe.execute()

    async def ack(self) -> None:
        """XACK + XDEL atomically: done entries leave the stream, so it holds only backlog."""
        async with self._broker.redis.pipeline(transaction=True) as pipe:
            await self._settle("ack", pipe)

    async def nack(self, delay: float = 0.0) -> None:
        if delay <= 0:
            await self._reclaim_own(back_date=True, what="nack")
            return
        token = uuid.uuid4().hex
        due = self._broker.server_ms() + int(delay * 1000)
        data = {f"{token}:b": self.body, f"{token}:a": str(self.attempt)}
        data[f"{token}:h"] = json.dumps(self.headers)
        if self.message_id:
            data[f"{token}:i"] = self.message_id
        async with self._broker.redis.pipeline(transaction=True) as pipe:
            pipe.hset(delayed_key(self.queue) + ":msgs", mapping=data)
            pipe.zadd(delayed_key(self.queue), {token: due})
            await self._settle("nack", pipe)  # copy + ack in one MULTI/EXEC

    async def heartbeat(self) -> None:
        await self._reclaim_own(back_date=False, what="heartbeat")

    async def _reclaim_own(self, *, back_date: bool, what: str) -> None:
        args = [GROUP, self._id, self._consumer.name, self._delivered, "1" if back_date else "0"]
        owned = 0
        with _errors(f"{what} on {self.queue} failed", nogroup_ok=True):
            owned = await self._broker.scripts["reclaim"](keys=[stream_key(self.queue)], args=args)
        if not owned:
            log.debug("%s ignored: %s %s was redelivered elsewhere", what, self.queue, self._id)

    async def dead_letter(self, reason: str, *, error_type: str = "Error") -> None:
        """Write the dead letter and ack the original in one MULTI/EXEC: never lost or doubled."""
        headers = dead_letter_headers(
            self.headers, queue=self.queue, reason=reason, error_type=error_type,
            attempts=self.attempt,
        )  # fmt: skip
        dlq = dlq_of(self.queue)
        await self._broker.declare(dlq)
        broker, key = self._broker, stream_key(dlq)
        cap = broker.dlq.max_messages
        async with broker.redis.pipeline(transaction=True) as pipe:
            # Capped exactly (dead letters are few, so trimming them exactly is cheap).
            pipe.xadd(key, _fields(self.body, headers, None), maxlen=min(cap, broker.maxlen) if cap
                      else broker.maxlen, approximate=cap is None)  # fmt: skip
            if broker.dlq.max_age:  # entry ids are server milliseconds: older ones go as this one comes
                oldest = broker.server_ms() - int(broker.dlq.max_age * 1000)
                pipe.xtrim(key, minid=f"{oldest}-0", approximate=False)
            await self._settle("dead_letter", pipe)


class RedisConsumer(Consumer):
    def __init__(self, broker: RedisBroker, queue: str, visibility: float) -> None:
        self.broker = broker
        self.queue = queue
        self.name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._visibility_ms = max(1, int(visibility * 1000))
        self._slice = max(0.05, min(1.0, visibility / 2))  # how often a long fetch re-checks
        # Due retries and stalled entries are looked for at most this often, not on every fetch:
        # that check is a round trip of its own, and a busy worker fetches once or twice per job.
        self._claim_every = self._slice
        self._next_claim = 0.0
        self._cursor = "0-0"
        self._closed = False

    async def fetch(self, max_messages: int, timeout: float) -> list[Delivery]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, timeout)
        count = max(1, max_messages)
        while not self._closed:
            try:
                with _errors(f"fetch from {self.queue} failed"):
                    now = loop.time()
                    if now >= self._next_claim:
                        batch, next_due_ms = await self._claim(count)
                        if batch:
                            return batch  # more may be waiting: look again on the next fetch
                        self._next_claim = now + self._claim_every
                        if next_due_ms >= 0:
                            self._next_claim = min(self._next_claim, now + next_due_ms / 1000)
                    block = min(deadline - now, self._slice, max(0.0, self._next_claim - now))
                    batch = await self._read_new(count, block)
            except BrokerError as exc:
                if not _is_nogroup(exc.__cause__ or exc):
                    raise
                log.warning("consumer group of %s vanished; re-creating it", self.queue)
                await self.broker.declare(self.queue, force=True)
                continue
            if batch or loop.time() >= deadline:
                return batch
        return []

    async def _claim(self, count: int) -> tuple[list[Delivery], int]:
        """Move due delayed copies in, then take over entries idle past the visibility timeout."""
        key, dkey = stream_key(self.queue), delayed_key(self.queue)
        client = self.broker.redis
        async with client.pipeline(transaction=False) as pipe:
            await self.broker.scripts["move"](
                keys=[dkey, dkey + ":msgs", key], args=[self.broker.maxlen, 100], client=pipe
            )
            pipe.xautoclaim(key, GROUP, self.name, self._visibility_ms, self._cursor, count=count)
            (_, next_due_ms), claimed = await pipe.execute()
        self._cursor = _text(claimed[0])
        entries = [(_text(i), f) for i, f in claimed[1] if f is not None]
        if not entries:
            return [], int(next_due_ms)
        async with client.pipeline(transaction=False) as pipe:
            for entry_id, _ in entries:
                pipe.xpending_range(key, GROUP, entry_id, entry_id, 1, self.name)
            pending = await pipe.execute()
        out: list[Delivery] = []
        for (entry_id, fields), info in zip(entries, pending, strict=True):
            if info:  # still ours (not acked in between)
                out.append(RedisDelivery(self, entry_id, fields, int(info[0]["times_delivered"])))
        return out, int(next_due_ms)

    async def _read_new(self, count: int, block: float) -> list[Delivery]:
        block_ms = int(block * 1000)
        reply = await self.broker.redis.xreadgroup(
            GROUP, self.name, {stream_key(self.queue): ">"}, count=count,
            block=block_ms if block_ms >= 1 else None,  # BLOCK 0 would wait forever
        )  # fmt: skip
        return [
            RedisDelivery(self, _text(entry_id), fields, 1)
            for _, entries in reply or []
            for entry_id, fields in entries
            if fields is not None
        ]

    async def close(self) -> None:
        """Stop fetching; forget this consumer name unless it still holds entries."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(BrokerError):
            await self.broker.reap(self.queue, min_idle_ms=0, name=self.name)


class RedisSlots(Slots):
    """Slots in ``orq:rl:<key>`` on the server's clock: shared by every worker."""

    def __init__(self, broker: RedisBroker) -> None:
        self._broker = broker

    async def reserve(self, key: str, interval: float) -> float:
        with _errors(f"reserve a rate-limit slot for {key}"):
            ms = max(1, int(interval * 1000))
            waited = await self._broker.scripts["slot"](keys=[f"orq:rl:{key}"], args=[ms])
        return int(waited) / 1000


class RedisBroker(Broker):
    scheme = "redis"
    # Redis reconnects inside each command: no count of its own.
    capabilities = Capabilities.lacking("counts_reconnects")

    def __init__(self, url: str, *, maxlen: int | None = None) -> None:
        self.url = url
        plain_url, self._tls = split_tls(url)
        parts = urlsplit(plain_url)
        query = dict(parse_qsl(parts.query))
        raw_maxlen = query.pop("maxlen", None)
        self._client_url = urlunsplit(parts._replace(query=urlencode(query)))
        chosen = maxlen if maxlen is not None else raw_maxlen
        self.maxlen = int(chosen) if str(chosen).isdigit() else 0 if chosen else DEFAULT_MAXLEN
        if self.maxlen <= 0:
            raise ConfigError(f"invalid maxlen {chosen!r} in {redact_url(url)}: use a positive int")
        self._password = parts.password
        self.dlq = DlqLimits.from_env()
        self._redis: aioredis.Redis | None = None
        self._declared: set[str] = set()
        self._clock_offset_ms = 0.0
        self._subscriptions: set[Callable[[], Awaitable[None]]] = set()
        self.scripts: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"RedisBroker({redact_url(self.url)!r})"

    @property
    def redis(self) -> aioredis.Redis:
        if self._redis is None:
            raise BrokerError("Redis broker is not connected: call connect() first")
        return self._redis

    def server_ms(self) -> int:
        """Now on the server's clock, so delayed retries are due by one clock for all hosts."""
        return int(time.time() * 1000 + self._clock_offset_ms)

    async def connect(self) -> None:
        if self._redis is not None:
            return
        where = redact_url(self.url)
        tls: dict[str, Any] = {}
        if self._tls is not None:
            ssl_context(self._tls)  # refuses bad files with the setting's name
            tls = {"ssl_ca_certs": self._tls.ca, "ssl_certfile": self._tls.cert, "ssl_keyfile": self._tls.key}
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
        except (rexc.RedisError, OSError) as exc:
            await client.aclose()
            refused = tls_failure(exc)
            if refused is not None:
                raise BrokerUnavailable(f"cannot connect to Redis at {where}: {refused}") from None
            if isinstance(exc, rexc.AuthenticationError) or "AUTH" in str(exc).upper():
                hint = "check the user and password in the URL"
            else:
                hint = "is the server running?"
            raise BrokerUnavailable(f"cannot reach Redis at {where}: {self._scrub(exc)}; {hint}") from None
        client.set_retry(Retry(ExponentialBackoff(cap=2.0, base=0.1), retries=8))  # ~10 s outages
        self._redis = client
        scripts = {"move": _MOVE_DUE, "reclaim": _RECLAIM_OWN, "publish": _PUBLISH_ONCE}
        scripts |= {"reap": _REAP, "purge": _PURGE, "slot": _RESERVE_SLOT}
        self.scripts = {name: client.register_script(src) for name, src in scripts.items()}  # EVALSHA

    def _scrub(self, exc: BaseException) -> str:
        text = " ".join(str(exc).split()) or type(exc).__name__  # always one line
        return text.replace(self._password, "***") if self._password else text

    async def close(self) -> None:
        for unsubscribe in list(self._subscriptions):
            await unsubscribe()
        if self._redis is not None:
            with contextlib.suppress(rexc.RedisError, OSError):
                await self._redis.aclose()
        self._redis = None

    async def declare(self, queue: str, *, force: bool = False) -> None:
        """Create the streams and groups of ``queue`` and its DLQ (group from id 0: keep backlog)."""
        for name in (queue, dlq_of(queue)):
            if name in self._declared and not force:
                continue
            with _errors(f"cannot declare {name}"):
                try:
                    await self.redis.xgroup_create(stream_key(name), GROUP, "0", mkstream=True)
                except rexc.ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise
                await self.redis.sadd(QUEUES_KEY, name)
            self._declared.add(name)

    async def publish(
        self,
        queue: str,
        body: bytes,
        *,
        message_id: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        await self.declare(queue)
        with _errors(f"publish to {queue} failed"):
            await self._xadd(self.redis, queue, body, message_id, headers)

    async def _xadd(
        self, client: Any, queue: str, body: bytes, message_id: str | None,
        headers: dict[str, str] | None,
    ) -> Any:  # fmt: skip
        if not message_id:
            return await client.xadd(stream_key(queue), _fields(body, headers, None), maxlen=self.maxlen)
        # Idempotent within DEDUP_SECONDS: the dedup mark and the XADD are one atomic script.
        return await self.scripts["publish"](
            keys=[stream_key(queue), f"orq:dedup:{queue}:{message_id}"],
            args=[self.maxlen, DEDUP_SECONDS, bytes(body), json.dumps(headers or {}), message_id],
            client=client,
        )

    async def ack_many(self, deliveries: Sequence[Delivery]) -> int:
        """XACK + XDEL of a whole batch in one MULTI/EXEC per stream: one round trip, not one each."""
        by_queue: dict[str, list[str]] = {}
        for delivery in deliveries:
            if not isinstance(delivery, RedisDelivery):
                raise TypeError(f"not a Redis delivery: {delivery!r}")
            by_queue.setdefault(delivery.queue, []).append(delivery._id)
        if not by_queue:
            return 0
        try:
            with _errors("ack of a batch failed", nogroup_ok=True):
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
            with _errors(f"publish to {queue} failed"):
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
        with _errors(f"cannot clean consumers of {queue}"):
            return int(await self.scripts["reap"](keys=[stream_key(queue)], args=[GROUP, min_idle_ms, name]))

    async def stats(self, queue: str) -> QueueStats:
        await self.declare(queue, force=True)  # also repairs a group deleted behind our back
        key = stream_key(queue)
        is_dlq = queue.endswith(DLQ_SUFFIX)
        with _errors(f"cannot read stats of {queue}"):
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.xlen(key).zcard(delayed_key(queue)).xlen(stream_key(dlq_of(queue)))
                pipe.xpending(key, GROUP).xinfo_groups(key).xrange(key, count=1).time()
                length, delayed, dead, pending, groups, first, now = await pipe.execute()
        in_flight = int(pending["pending"])
        consumers = next((g["consumers"] for g in groups if _text(g["name"]) == GROUP), 0)
        oldest = None
        if first:
            born_ms = int(_text(first[0][0]).split("-")[0])
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
        with _errors(f"cannot read the dead letters of {queue}"):
            async with self.redis.pipeline(transaction=True) as pipe:
                count, newest = await pipe.xlen(key).xrevrange(key, count=1).execute()
        return count, _position(_text(newest[0][0])) if newest else (0, 0)

    async def peek(self, queue: str, limit: int = 10) -> list[Message]:
        with _errors(f"cannot peek {queue}"):
            entries = await self.redis.xrange(stream_key(queue), count=max(1, limit))
        return [Message(_body(f), _headers(f), _text(i)) for i, f in entries if f is not None]

    async def purge(self, queue: str) -> int:
        await self.declare(queue)
        dkey = delayed_key(queue)
        with _errors(f"cannot purge {queue}"):
            keys = [stream_key(queue), dkey, dkey + ":msgs"]
            return int(await self.scripts["purge"](keys=keys, args=[GROUP]))

    async def delete(self, queue: str) -> None:
        for name in (queue, dlq_of(queue)):
            self._declared.discard(name)
            with _errors(f"cannot delete {name}"):
                dkey = delayed_key(name)
                await self.redis.delete(stream_key(name), dkey, dkey + ":msgs")
                await self.redis.srem(QUEUES_KEY, name)
                async for dedup in self.redis.scan_iter(match=f"orq:dedup:{name}:*", count=500):
                    await self.redis.delete(dedup)

    async def queues(self) -> list[str]:
        with _errors("cannot list queues"):
            return sorted(_text(n) for n in await self.redis.smembers(QUEUES_KEY))

    def slots(self) -> Slots:
        return RedisSlots(self)

    async def publish_event(self, subject: str, body: bytes) -> None:
        if self._redis is None:
            return
        try:
            await self._redis.publish("orq:ev:" + subject, body)
        except (rexc.RedisError, OSError) as exc:
            log.debug("event not sent: %s", exc)

    async def subscribe_events(self, subject: str, callback: EventCallback) -> Callable[[], Awaitable[None]]:
        """Redis pub/sub; NATS wildcards (``*``, ``>``) become a glob pattern."""
        tokens = subject.split(".")
        wildcard = "*" in tokens or ">" in tokens
        channel = "orq:ev:" + ".".join("*" if t in ("*", ">") else t for t in tokens)
        pubsub = self.redis.pubsub()
        with _errors(f"cannot subscribe to {subject}"):
            await (pubsub.psubscribe(channel) if wildcard else pubsub.subscribe(channel))
            for _ in range(50):  # wait for the confirmation: no event sent after we return is lost
                msg = await pubsub.get_message(timeout=0.1)
                if msg and msg.get("type") in ("subscribe", "psubscribe"):
                    break

        async def pump() -> None:
            async for msg in pubsub.listen():
                if msg.get("type") not in ("message", "pmessage"):
                    continue
                try:
                    result = callback(msg["data"])
                    if asyncio.iscoroutine(result):
                        await result
                except Exception:
                    log.exception("event callback for %s failed", subject)

        task = asyncio.ensure_future(pump())

        async def unsubscribe() -> None:
            self._subscriptions.discard(unsubscribe)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, rexc.RedisError, OSError):
                await task
            with contextlib.suppress(rexc.RedisError, OSError):
                await pubsub.aclose()

        self._subscriptions.add(unsubscribe)
        return unsubscribe
