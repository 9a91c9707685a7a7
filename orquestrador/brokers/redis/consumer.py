"""Consuming from Redis Streams: a group consumer per Consumer, and its deliveries."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import uuid
from typing import Any, Protocol

import redis.asyncio as aioredis

from orquestrador.brokers.base import Consumer, Delivery, dlq_of
from orquestrador.brokers.redis.errors import is_nogroup, mapped
from orquestrador.brokers.redis.names import (
    FIELDS,
    GROUP,
    Keys,
    entry_body,
    entry_position,
    text,
)
from orquestrador.brokers.redis.scripts import run_pipeline
from orquestrador.brokers.support.limits import DlqLimits
from orquestrador.errors import BrokerError

log = logging.getLogger(__name__)


class Host(Protocol):
    """What consumers and deliveries need of their broker, so this module never imports it."""

    dlq: DlqLimits
    keys: Keys
    maxlen: int
    scripts: dict[str, Any]

    @property
    def redis(self) -> aioredis.Redis: ...

    def server_ms(self) -> int: ...

    async def declare(self, queue: str, *, force: bool = False) -> None: ...

    async def reap(self, queue: str, *, min_idle_ms: int, name: str = "") -> int: ...


class RedisDelivery(Delivery):
    def __init__(
        self, consumer: RedisConsumer, entry_id: str, entry: dict[bytes, bytes], delivered: int
    ) -> None:
        self._consumer = consumer
        self._broker = consumer.broker
        self.entry_id = entry_id
        self._delivered = delivered
        self.queue = consumer.queue
        self.body = entry_body(entry)
        self.attempt = FIELDS.read(self, entry.get(b"h"), entry.get(b"id"), count=entry.get(b"a")) + delivered
        self.position = entry_position(entry_id)

    async def _settle(self, what: str, script: str, keys: list[str], args: list[Any]) -> None:
        """Run ``script``, which writes what replaces this entry in ``keys`` and acks it, atomically."""
        with mapped(f"{what} on {self.queue} failed", nogroup_ok=True):
            await self._broker.scripts[script](keys=[self._stream, *keys], args=[GROUP, self.entry_id, *args])

    @property
    def _stream(self) -> str:
        return self._broker.keys.stream(self.queue)

    async def ack(self) -> None:
        """XACK + XDEL atomically: done entries leave the stream, so it holds only backlog."""
        await self._settle("ack", "ack", [], [])

    async def nack(self, delay: float = 0.0) -> None:
        if delay <= 0:
            await self._reclaim_own(back_date=True, what="nack")
            return
        await self._later(delay, self.attempt)

    defer_is_free = True

    async def defer(self, delay: float) -> None:
        """The delayed copy keeps this delivery's count: waiting is not an attempt."""
        await self._later(max(delay, 0.001), self.attempt - 1)

    async def _later(self, delay: float, attempts: int) -> None:
        due = self._broker.server_ms() + int(delay * 1000)
        dkey = self._broker.keys.delayed(self.queue)
        copy = [uuid.uuid4().hex, due, self.body, attempts, json.dumps(self.headers)]
        await self._settle("nack", "retry_later", [dkey, dkey + ":msgs"], [*copy, self.message_id or ""])

    async def heartbeat(self) -> None:
        await self._reclaim_own(back_date=False, what="heartbeat")

    async def _reclaim_own(self, *, back_date: bool, what: str) -> None:
        args = [GROUP, self.entry_id, self._consumer.name, self._delivered, "1" if back_date else "0"]
        owned = 0
        with mapped(f"{what} on {self.queue} failed", nogroup_ok=True):
            owned = await self._broker.scripts["reclaim"](keys=[self._stream], args=args)
        if not owned:
            log.debug("%s ignored: %s %s was redelivered elsewhere", what, self.queue, self.entry_id)

    async def dead_letter(self, reason: str, *, error_type: str = "Error") -> None:
        """Write the dead letter and ack the original in one MULTI/EXEC: never lost or doubled."""
        headers = self.dead_letter_headers(reason, error_type)
        dlq = dlq_of(self.queue)
        await self._broker.declare(dlq)
        broker = self._broker
        cap = broker.dlq.max_messages
        # Capped exactly (dead letters are few, so trimming them exactly is cheap).
        limit = [min(cap, broker.maxlen), "="] if cap else [broker.maxlen, "~"]
        oldest = ""
        if broker.dlq.max_age:  # entry ids are server milliseconds: older ones go as this one comes
            oldest = f"{broker.server_ms() - int(broker.dlq.max_age * 1000)}-0"
        args = [*limit, oldest, self.body, json.dumps(headers)]
        await self._settle("dead_letter", "dead_letter", [broker.keys.stream(dlq)], args)


class RedisConsumer(Consumer):
    def __init__(self, broker: Host, queue: str, visibility: float) -> None:
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
                with mapped(f"fetch from {self.queue} failed"):
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
                if not is_nogroup(exc.__cause__ or exc):
                    raise
                log.warning("consumer group of %s vanished; re-creating it", self.queue)
                await self.broker.declare(self.queue, force=True)
                continue
            if batch or loop.time() >= deadline:
                return batch
        return []

    async def _claim(self, count: int) -> tuple[list[Delivery], int]:
        """Move due delayed copies in, then take over entries idle past the visibility timeout."""
        key, dkey = self.broker.keys.stream(self.queue), self.broker.keys.delayed(self.queue)
        client = self.broker.redis
        async with client.pipeline(transaction=False) as pipe:
            await self.broker.scripts["move"](
                keys=[dkey, dkey + ":msgs", key], args=[self.broker.maxlen, 100], client=pipe
            )
            pipe.xautoclaim(key, GROUP, self.name, self._visibility_ms, self._cursor, count=count)
            (_, next_due_ms), claimed = await run_pipeline(pipe)
        self._cursor = text(claimed[0])
        entries = [(text(i), f) for i, f in claimed[1] if f is not None]
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
        reply: Any = await self.broker.redis.xreadgroup(
            GROUP, self.name, {self.broker.keys.stream(self.queue): ">"}, count=count,
            block=block_ms if block_ms >= 1 else None,  # BLOCK 0 would wait forever
        )  # fmt: skip
        return [
            RedisDelivery(self, text(entry_id), fields, 1)
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
