"""Raw redis-py (asyncio) baseline: a stream per queue and one consumer group, by hand.

``python -m bench.raw_redis worker|producer|cleanup ...`` (see :mod:`bench.rawbase`).
A publish counts once XADD replied (pipelined, ``window`` per round trip). The worker reads up
to ``--batch`` jobs with XREADGROUP, XADDs their results in one pipeline, waits for the replies,
then XACK + XDEL the jobs in a second pipeline. Keys are ``benchraw:<queue>``; no MAXLEN
trimming and no dedup marks (the toolkit adds both).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions as rexc

from bench.common import raw_result
from bench.rawbase import OnBody, RawClient, chunks, main

GROUP = "workers"


def key(queue: str) -> str:
    return "benchraw:" + queue


class RedisRaw(RawClient):
    def __init__(self) -> None:
        self.r: aioredis.Redis | None = None
        self.name = f"c-{os.getpid()}"

    async def connect(self, url: str) -> None:
        # A blocking pool: concurrent publishers wait for a connection instead of failing with
        # "Too many connections" (redis-py's default pool holds 100 and raises beyond them).
        pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=64, timeout=30)
        self.r = aioredis.Redis(connection_pool=pool)
        await self.r.ping()

    async def close(self) -> None:
        if self.r is not None:
            await self.r.aclose()

    def _r(self) -> aioredis.Redis:
        assert self.r is not None
        return self.r

    async def declare(self, queue: str) -> None:
        try:
            await self._r().xgroup_create(key(queue), GROUP, "0", mkstream=True)
        except rexc.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def publish(self, queue: str, body: bytes) -> None:
        await self._r().xadd(key(queue), {"b": body})

    async def publish_many(self, queue: str, bodies: Iterable[bytes], window: int = 256) -> None:
        for chunk in chunks(bodies, window):
            async with self._r().pipeline(transaction=False) as pipe:
                for body in chunk:
                    pipe.xadd(key(queue), {"b": body})
                await pipe.execute()

    async def _read(self, queue: str, batch: int) -> list[tuple[Any, dict[bytes, bytes]]]:
        reply = await self._r().xreadgroup(GROUP, self.name, {key(queue): ">"}, count=batch, block=500)
        return [(i, f) for _, entries in reply or [] for i, f in entries if f is not None]

    async def _ack(self, queue: str, ids: list[Any]) -> None:
        async with self._r().pipeline(transaction=False) as pipe:
            pipe.xack(key(queue), GROUP, *ids)
            pipe.xdel(key(queue), *ids)
            await pipe.execute()

    async def collect(self, queue: str, on_body: OnBody, stop: asyncio.Event, batch: int) -> None:
        while not stop.is_set():
            entries = await self._read(queue, batch)
            if not entries:
                continue
            for _, fields in entries:
                on_body(fields[b"b"])
            await self._ack(queue, [i for i, _ in entries])

    async def serve(self, queue: str, stop: asyncio.Event, batch: int) -> None:
        while not stop.is_set():
            entries = await self._read(queue, batch)
            if not entries:
                continue
            async with self._r().pipeline(transaction=False) as pipe:
                for _, fields in entries:
                    reply_to, body = raw_result(fields[b"b"], self.worker_id)
                    pipe.xadd(key(reply_to), {"b": body})
                await pipe.execute()  # every result is in before any job is acked
            await self._ack(queue, [i for i, _ in entries])

    async def delete(self, queues: list[str]) -> None:
        if queues:
            await self._r().delete(*(key(q) for q in queues))


if __name__ == "__main__":
    main(RedisRaw(), "python -m bench.raw_redis")
