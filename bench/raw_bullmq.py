"""Raw BullMQ baseline: the Python ``bullmq`` package used as its README shows, by hand.

``python -m bench.raw_bullmq worker|producer|cleanup --url bullmq://… ...`` (see
:mod:`bench.rawbase`). A publish counts once ``Queue.add`` / ``addBulk`` returned (the job is in
Redis); the worker is a ``bullmq.Worker`` whose processor adds the result to the results queue
and returns, so BullMQ completes the job only after its result is in. Jobs carry the request as
their data (BullMQ stores JSON objects), as a Node or Python BullMQ user would.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from typing import Any

from bullmq import Queue, Worker

from bench.common import raw_result
from bench.rawbase import OnBody, RawClient, chunks, main

KEEP = {"removeOnComplete": True, "removeOnFail": True}


class BullMQRaw(RawClient):
    def __init__(self) -> None:
        self.url = ""
        self.queues: dict[str, Queue] = {}

    async def connect(self, url: str) -> None:
        self.url = url.replace("bullmq://", "redis://", 1)

    def _queue(self, name: str) -> Queue:
        if name not in self.queues:
            self.queues[name] = Queue(name, {"connection": self.url})
        return self.queues[name]

    async def close(self) -> None:
        for queue in self.queues.values():
            await queue.close()

    async def declare(self, queue: str) -> None:
        return None  # a BullMQ queue exists once a job is added

    async def publish(self, queue: str, body: bytes) -> None:
        await self._queue(queue).add("job", json.loads(body), KEEP)

    async def publish_many(self, queue: str, bodies: Iterable[bytes], window: int = 256) -> None:
        for chunk in chunks(bodies, window):
            jobs = [{"name": "job", "data": json.loads(body), "opts": KEEP} for body in chunk]
            await self._queue(queue).addBulk(jobs)

    async def _consume(self, queue: str, process: Any, stop: asyncio.Event, batch: int) -> None:
        worker = Worker(queue, process, {"connection": self.url, "concurrency": batch, **KEEP})
        await stop.wait()
        await worker.close()

    async def collect(self, queue: str, on_body: OnBody, stop: asyncio.Event, batch: int) -> None:
        async def process(job: Any, token: str) -> None:
            on_body(json.dumps(job.data).encode())

        await self._consume(queue, process, stop, batch)

    async def serve(self, queue: str, stop: asyncio.Event, batch: int) -> None:
        async def process(job: Any, token: str) -> None:
            reply_to, body = raw_result(json.dumps(job.data).encode(), self.worker_id)
            await self._queue(reply_to).add("result", json.loads(body), KEEP)  # in before completing

        await self._consume(queue, process, stop, batch)

    async def delete(self, queues: list[str]) -> None:
        for name in queues:
            await self._queue(name).obliterate(force=True)


if __name__ == "__main__":
    main(BullMQRaw(), "python -m bench.raw_bullmq")
