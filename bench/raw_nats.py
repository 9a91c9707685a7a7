"""Raw nats-py baseline: JetStream work-queue streams and a durable pull consumer, by hand.

``python -m bench.raw_nats worker|producer|cleanup ...`` (see :mod:`bench.rawbase`).
Publishes wait for the JetStream PubAck (pipelined with ``asyncio.gather``); the worker fetches
up to ``--batch`` jobs, publishes their results, waits for every PubAck, then acks the jobs
(``msg.ack()``, at-least-once: a lost ack only means a redelivery and a duplicate result).
No ``Nats-Msg-Id`` header (the toolkit sets one for server-side dedup).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from bench.common import raw_result
from bench.rawbase import OnBody, RawClient, chunks, main

DURABLE = "workers"


def stream(queue: str) -> str:
    return "BENCHRAW_" + queue


class NatsRaw(RawClient):
    def __init__(self) -> None:
        self.nc: Client | None = None
        self.js: JetStreamContext | None = None

    async def connect(self, url: str) -> None:
        self.nc = await nats.connect(url, name="bench-raw")
        self.js = self.nc.jetstream(timeout=10)

    async def close(self) -> None:
        if self.nc is not None:
            await self.nc.drain()

    def _js(self) -> JetStreamContext:
        assert self.js is not None
        return self.js

    async def declare(self, queue: str) -> None:
        js = self._js()
        await js.add_stream(
            api.StreamConfig(
                name=stream(queue), subjects=[queue],
                retention=api.RetentionPolicy.WORK_QUEUE, storage=api.StorageType.FILE,
            )
        )  # fmt: skip
        await js.add_consumer(
            stream(queue),
            api.ConsumerConfig(
                durable_name=DURABLE, ack_policy=api.AckPolicy.EXPLICIT, ack_wait=30,
                max_ack_pending=-1, filter_subject=queue,
            ),
        )  # fmt: skip

    async def publish(self, queue: str, body: bytes) -> None:
        await self._js().publish(queue, body, stream=stream(queue))

    async def publish_many(self, queue: str, bodies: Iterable[bytes], window: int = 256) -> None:
        js = self._js()
        for chunk in chunks(bodies, window):
            await asyncio.gather(*(js.publish(queue, b, stream=stream(queue)) for b in chunk))

    async def _subscribe(self, queue: str, batch: int) -> JetStreamContext.PullSubscription:
        return await self._js().pull_subscribe_bind(
            durable=DURABLE, stream=stream(queue), pending_msgs_limit=max(1024, batch * 4)
        )

    async def _fetch(self, sub: JetStreamContext.PullSubscription, batch: int) -> list[Msg]:
        try:
            return await sub.fetch(batch=batch, timeout=0.5)
        except (TimeoutError, nats.errors.TimeoutError):
            return []

    async def collect(self, queue: str, on_body: OnBody, stop: asyncio.Event, batch: int) -> None:
        sub = await self._subscribe(queue, batch)
        while not stop.is_set():
            for msg in await self._fetch(sub, batch):
                on_body(msg.data)
                await msg.ack()
        await sub.unsubscribe()

    async def serve(self, queue: str, stop: asyncio.Event, batch: int) -> None:
        js = self._js()
        sub = await self._subscribe(queue, batch)
        while not stop.is_set():
            msgs = await self._fetch(sub, batch)
            if not msgs:
                continue
            results = [raw_result(m.data, self.worker_id) for m in msgs]
            await asyncio.gather(*(js.publish(q, body, stream=stream(q)) for q, body in results))
            for msg in msgs:
                await msg.ack()
        await sub.unsubscribe()

    async def delete(self, queues: list[str]) -> None:
        for queue in queues:
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await self._js().delete_stream(stream(queue))


if __name__ == "__main__":
    main(NatsRaw(), "python -m bench.raw_nats")
