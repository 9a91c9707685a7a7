"""The BullMQ broker: BullMQ queues on Redis through the ``bullmq`` package, inspection, replay
(see :mod:`orquestrador.brokers.bullmq` for the mapping)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis.asyncio as aioredis
from bullmq import Job, Queue
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from orquestrador.brokers.base import (
    DLQ_SUFFIX,
    Broker,
    Capabilities,
    Consumer,
    EventCallback,
    Message,
    QueueStats,
    TopicCallback,
    Unsubscribe,
    dlq_of,
    origin_of,
    validate_queue_name,
)
from orquestrador.brokers.bullmq.consumer import BullMQConsumer, DeadLetterConsumer, read_job
from orquestrador.brokers.bullmq.errors import DRIVER_ERRORS, LeaseLost, mapped
from orquestrador.brokers.bullmq.jobs import (
    DEAD_LETTER_FIELD,
    HEADERS_OPT,
    body_of,
    dead_letter_headers_of,
    job_data,
    job_headers,
)
from orquestrador.brokers.redis import RedisBroker
from orquestrador.brokers.slots import Slots
from orquestrador.brokers.support.limits import DlqLimits
from orquestrador.errors import BrokerError, ConfigError
from orquestrador.settings import redact_url

DEFAULT_PREFIX = "bull"  # BullMQ's, Node's and Bull Board's default
QUEUES_KEY = "orq:bullmq:queues"  # the names this toolkit declared (``orq queues``)
DEDUP_SECONDS = 120  # completed jobs are kept this long: their id dedups a second publish
# The waiting states, in the order a peek lists them; with "active" and "failed", what stats count.
WAITING = ("wait", "paused", "prioritized", "delayed")
# BullMQ's addStandardJob script, its keys in its order (bullmq.scripts.Scripts.addStandardJob).
_ADD_KEYS = ["wait", "paused", "meta", "id", "completed", "delayed", "active", "events", "marker"]


def _check_added(queue: str, replies: list[Any]) -> None:
    """addStandardJob answers a job id, or a negative code when BullMQ refused the job."""
    refused = [r for r in replies if isinstance(r, int) and r < 0]
    if refused:
        count = len(refused)
        raise BrokerError(f"publish to {queue} failed: BullMQ refused {count} job(s) (code {refused[0]})")


def _redis_url(url: str) -> tuple[str, str]:
    """The same server as a redis:// (rediss://) URL, and the key prefix (``?prefix=``)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefix = next((v for k, v in query if k == "prefix"), DEFAULT_PREFIX)
    if not prefix or ":" in prefix or not prefix.isprintable():
        raise ConfigError(
            f"invalid prefix {prefix!r} in {redact_url(url)}: use BullMQ's key prefix, e.g. bull"
        )
    scheme = "rediss" if parts.scheme == "bullmqs" else "redis"
    rest = urlencode([(k, v) for k, v in query if k != "prefix"])
    return urlunsplit(parts._replace(scheme=scheme, query=rest)), prefix


class BullMQBroker(Broker):
    scheme = "bullmq"
    display_name = "BullMQ"
    # Reconnects happen inside each Redis command: no count of its own. Topics are the side
    # Redis adapter's (Pub/Sub live, a capped stream for durable subscriptions).
    capabilities = Capabilities.lacking("counts_reconnects")

    def __init__(self, url: str) -> None:
        super().__init__(url)
        redis_url, self.prefix = _redis_url(url)
        # The same server through the Redis adapter: its connection checks (reachability, TLS,
        # credentials), lifecycle events on pub/sub, topics and shared rate-limit slots serve here too.
        self._side = RedisBroker(redis_url)
        self.dlq = DlqLimits.from_env()
        self.keep_completed = {"age": DEDUP_SECONDS}
        keep: dict[str, int] = {}
        if self.dlq.max_messages:
            keep["count"] = self.dlq.max_messages
        if self.dlq.max_age:
            keep["age"] = max(1, int(self.dlq.max_age))
        self.keep_failed: dict[str, int] | bool = keep or False
        self._client: aioredis.Redis | None = None
        self._queues: dict[str, Queue] = {}
        self._last_finished_ms = 0

    @property
    def client(self) -> aioredis.Redis:
        if self._client is None:
            raise self.not_connected()
        return self._client

    async def connect(self) -> None:
        if self._client is not None:
            return
        try:
            await self._side.connect()  # fails first, with the Redis adapter's one clear line
        except BrokerError as exc:  # ... naming the URL the user gave
            raise type(exc)(str(exc).replace(redact_url(self._side.url), redact_url(self.url))) from None
        tls: dict[str, Any] = {}
        if self.tls is not None:
            tls = {"ssl_ca_certs": self.tls.ca, "ssl_certfile": self.tls.cert, "ssl_keyfile": self.tls.key}
        # BullMQ's classes read replies as text; bytes that are not UTF-8 (a hand-made job) survive.
        pool = aioredis.BlockingConnectionPool.from_url(
            self._side.plain_url, max_connections=64, timeout=30, socket_connect_timeout=3,
            socket_timeout=15, health_check_interval=30, client_name="orquestrador-bullmq",
            decode_responses=True, encoding_errors="surrogateescape", **tls,
        )  # fmt: skip
        client = aioredis.Redis.from_pool(pool)
        client.set_retry(Retry(ExponentialBackoff(cap=2.0, base=0.1), retries=8))  # ~10 s outages
        self._client = client

    async def close(self) -> None:
        await self._side.close()
        if self._client is not None:
            with contextlib.suppress(*DRIVER_ERRORS):
                await self._client.aclose()
        self._client = None
        self._queues.clear()

    def bull_queue(self, name: str) -> Queue:
        """BullMQ's Queue for ``name`` on this connection (its scripts, keys and backend)."""
        queue = self._queues.get(name)
        if queue is None:
            validate_queue_name(name)
            queue = self._queues[name] = Queue(name, {"connection": self.client, "prefix": self.prefix})
        return queue

    def finished_on(self, stamp_ms: int) -> int:
        """``stamp_ms``, or just after the last one this connection gave (see BullMQDelivery.dead_letter)."""
        self._last_finished_ms = max(stamp_ms, self._last_finished_ms + 1)
        return self._last_finished_ms

    async def _declare_new(self, names: list[str]) -> None:
        """BullMQ queues exist once a job is added; the names are kept for ``queues()``."""
        with mapped(f"cannot declare {', '.join(names)}"):
            await self.client.sadd(QUEUES_KEY, *names)

    async def publish(
        self,
        queue: str,
        body: bytes,
        *,
        message_id: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """A BullMQ job (id ``message_id``: a second one with that id is dropped while the first
        is kept, as BullMQ does), returning once Redis has it."""
        await self.declare(queue)
        with mapped(f"publish to {queue} failed"):
            added = await self._add(self.bull_queue(queue), None, body, message_id, headers)
        _check_added(queue, [added])

    async def publish_many(
        self, queue: str, items: Iterable[tuple[bytes, str | None]], *, window: int = 256
    ) -> int:
        """Pipelined: ``window`` jobs per round trip (as BullMQ's addBulk), not one call each."""
        await self.declare(queue)
        bull, count, it = self.bull_queue(queue), 0, iter(items)
        while chunk := list(itertools.islice(it, max(1, window))):
            with mapped(f"publish to {queue} failed"):
                async with self.client.pipeline(transaction=False) as pipe:
                    for body, message_id in chunk:
                        await self._add(bull, pipe, body, message_id, None)
                    added = await pipe.execute()
            _check_added(queue, added)
            count += len(chunk)
        return count

    def _add(
        self, bull: Queue, pipe: Any, body: bytes, message_id: str | None, headers: dict[str, str] | None
    ) -> Any:
        """BullMQ's addStandardJob script for ``body`` (on ``pipe`` if given)."""
        opts: dict[str, Any] = {"removeOnComplete": self.keep_completed, "removeOnFail": self.keep_failed}
        if message_id:
            opts["jobId"] = message_id
        if headers:
            opts[HEADERS_OPT] = headers
        data, name = job_data(body)
        job = Job(bull, name, None, opts)
        scripts = bull.backend.scripts
        packed, _data, packed_opts = scripts.addJobArgs(job)
        # The body is the job's data as published: BullMQ would re-encode parsed JSON.
        args = [packed, data, packed_opts, job.timestamp]
        return scripts.commands["addStandardJob"](keys=scripts.getKeys(_ADD_KEYS), args=args, client=pipe)

    async def consume(self, queue: str, *, visibility_timeout: float = 30.0, prefetch: int = 16) -> Consumer:
        await self.declare(queue)
        if queue.endswith(DLQ_SUFFIX):
            return DeadLetterConsumer(queue, self.bull_queue(origin_of(queue)))
        return BullMQConsumer(self, queue, visibility_timeout)

    async def _counts(self, queue: str) -> dict[str, int]:
        states = [*WAITING, "active", "failed"]
        with mapped(f"cannot read stats of {queue}"):
            counts = await self.bull_queue(queue).backend.getCounts(states)
        return {state: int(n or 0) for state, n in zip(states, counts, strict=True)}

    async def stats(self, queue: str) -> QueueStats:
        """BullMQ's own counts: waiting (with paused, prioritized, delayed), active, failed."""
        await self.declare(queue)
        if queue.endswith(DLQ_SUFFIX):
            failed = (await self._counts(origin_of(queue)))["failed"]
            return QueueStats(queue=queue, depth=failed, in_flight=0, dead_letters=0)
        counts = await self._counts(queue)
        return QueueStats(
            queue=queue,
            depth=sum(counts[s] for s in WAITING),
            in_flight=counts["active"],
            dead_letters=counts["failed"],
            oldest_age=await self._oldest_age(queue),
        )

    async def _oldest_age(self, queue: str) -> float | None:
        keys = self.bull_queue(queue).keys
        with mapped(f"cannot read stats of {queue}"):
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.lindex(keys["wait"], -1)
                pipe.lindex(keys["paused"], -1)
                pipe.zrange(keys["prioritized"], 0, 0)
                pipe.zrange(keys["delayed"], 0, 0)
                pipe.time()
                *heads, now = await pipe.execute()
            ids = [h[0] if isinstance(h, list) else h for h in heads if h]
            if not ids:
                return None
            async with self.client.pipeline(transaction=False) as pipe:
                for job_id in ids:
                    pipe.hget(f"{keys['']}{job_id}", "timestamp")
                stamps = [int(s) for s in await pipe.execute() if isinstance(s, str) and s.isdigit()]
        if not stamps:
            return None
        return max(0.0, (int(now[0]) * 1000 + int(now[1]) / 1000 - min(stamps)) / 1000)

    async def dead_letter_snapshot(self, queue: str) -> tuple[int, tuple[int, ...] | None]:
        return (await self._counts(origin_of(queue)))["failed"], None

    async def peek(self, queue: str, limit: int = 10) -> list[Message]:
        """The oldest waiting jobs (of a ``.dlq``: the oldest failed ones, with why they failed)."""
        dead = queue.endswith(DLQ_SUFFIX)
        bull = self.bull_queue(origin_of(queue))
        states = ["failed"] if dead else list(WAITING)
        with mapped(f"cannot peek {queue}"):
            ids = await bull.backend.getRanges(states, 0, max(1, limit) - 1, True)
            ids = [str(i) for i in ids][: max(1, limit)]
            async with self.client.pipeline(transaction=False) as pipe:
                for job_id in ids:
                    pipe.hgetall(bull.toKey(job_id))
                raws = await pipe.execute()
        out: list[Message] = []
        for job_id, raw in zip(ids, raws, strict=True):
            if not raw:
                continue
            _job, reader = read_job(bull, raw, job_id)
            headers = job_headers(raw, reader)
            if dead:
                headers |= dead_letter_headers_of(raw, reader)
            out.append(Message(body_of(raw.get("data")), headers, job_id))
        return out

    async def purge(self, queue: str) -> int:
        """Drop waiting and delayed jobs (BullMQ's drain); active and failed ones stay."""
        await self.declare(queue)
        before = await self._counts(queue)
        with mapped(f"cannot purge {queue}"):
            await self.bull_queue(queue).drain(delayed=True)
        return sum(before[s] for s in WAITING)

    async def delete(self, queue: str) -> None:
        """Obliterate the BullMQ queue (every job, its failed ones too) and forget the names."""
        origin = origin_of(queue)
        with mapped(f"cannot delete {origin}"):
            await self.bull_queue(origin).obliterate(force=True)
            await self.client.srem(QUEUES_KEY, origin, dlq_of(origin))
        self.forget(origin)
        self.forget(dlq_of(origin))

    async def queues(self) -> list[str]:
        with mapped("cannot list queues"):
            return sorted(str(name) for name in await self.client.smembers(QUEUES_KEY))

    async def replay(
        self, queue: str, *, limit: int | None = None, progress: Callable[[int], None] | None = None
    ) -> int:
        """BullMQ's own retry of the failed jobs there now (oldest first), each once, with their
        attempts reset; a job failing again meanwhile waits for the next replay."""
        origin = origin_of(queue)
        bull = self.bull_queue(origin)
        if limit is not None and limit <= 0:
            return 0
        with mapped(f"cannot read the dead letters of {origin}"):
            ids = [
                str(i)
                for i in await bull.backend.getRanges(["failed"], 0, -1 if limit is None else limit - 1, True)
            ]
        moved = 0
        for start in range(0, len(ids), 64):
            outcomes = await asyncio.gather(*(self._retry(bull, i) for i in ids[start : start + 64]))
            moved += sum(outcomes)
            if progress is not None:
                progress(moved)
        return moved

    async def _retry(self, bull: Queue, job_id: str) -> bool:
        job = Job(bull, "orq", None, {}, job_id)
        try:
            with mapped(f"cannot replay job {job_id} of {bull.name}"):
                await bull.backend.reprocessJob(
                    job, "failed", {"resetAttemptsMade": True, "resetAttemptsStarted": True}
                )
                await self.client.hdel(bull.toKey(job_id), DEAD_LETTER_FIELD)
        except LeaseLost:  # gone meanwhile (retention, another replay): nothing to move
            return False
        return True

    def slots(self) -> Slots:
        return self._side.slots()

    async def publish_event(self, subject: str, body: bytes) -> None:
        await self._side.publish_event(subject, body)

    async def subscribe_events(self, subject: str, callback: EventCallback) -> Callable[[], Awaitable[None]]:
        return await self._side.subscribe_events(subject, callback)

    async def publish_topic(self, topic: str, body: bytes) -> None:
        await self._side.publish_topic(topic, body)

    async def subscribe_topic(
        self, pattern: str, callback: TopicCallback, *, durable: str | None = None
    ) -> Unsubscribe:
        return await self._side.subscribe_topic(pattern, callback, durable=durable)

    async def delete_subscription(self, durable: str) -> None:
        await self._side.delete_subscription(durable)
