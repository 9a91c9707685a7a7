"""Raw aiobotocore baseline: an SQS queue per queue name, long polling, by hand.

``python -m bench.raw_sqs worker|producer|cleanup ...`` (see :mod:`bench.rawbase`). A publish
counts once SendMessage(Batch) answered (batches of 10, ``window`` messages in flight). The worker
receives up to 10 jobs per ReceiveMessage (SQS's most), sends their results in one
SendMessageBatch, then deletes the jobs with one DeleteMessageBatch. Queues are ``benchraw_<queue>``;
no headers, dead-letter queues or redrive policies (the toolkit adds all three). Credentials and
region come from the AWS environment, as for the toolkit.

On an emulator (moto, what ``python -m bench --brokers sqs`` starts) the numbers measure the
emulator's request handling, not SQS: no ratio against the other brokers means anything there.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from aiobotocore.session import get_session
from botocore.exceptions import ClientError

from bench.common import raw_result
from bench.rawbase import OnBody, RawClient, chunks, main


def name(queue: str) -> str:
    return "benchraw_" + queue


class SqsRaw(RawClient):
    def __init__(self) -> None:
        self.client: Any = None
        self._stack = contextlib.AsyncExitStack()
        self._urls: dict[str, str] = {}

    async def connect(self, url: str) -> None:
        parts = urlsplit(url)
        endpoint = dict(parse_qsl(parts.query)).get("endpoint_url")
        creator = get_session().create_client(
            "sqs", region_name=parts.hostname or None, endpoint_url=endpoint
        )
        self.client = await self._stack.enter_async_context(creator)

    async def close(self) -> None:
        await self._stack.aclose()

    async def url(self, queue: str) -> str:
        if queue not in self._urls:
            self._urls[queue] = (await self.client.create_queue(QueueName=name(queue)))["QueueUrl"]
        return self._urls[queue]

    async def declare(self, queue: str) -> None:
        await self.url(queue)

    async def publish(self, queue: str, body: bytes) -> None:
        await self.client.send_message(QueueUrl=await self.url(queue), MessageBody=body.decode())

    async def _send_batch(self, url: str, bodies: list[bytes]) -> None:
        entries = [{"Id": str(i), "MessageBody": b.decode()} for i, b in enumerate(bodies)]
        reply = await self.client.send_message_batch(QueueUrl=url, Entries=entries)
        if reply.get("Failed"):
            raise RuntimeError(f"SQS refused {len(reply['Failed'])} messages")

    async def publish_many(self, queue: str, bodies: Iterable[bytes], window: int = 256) -> None:
        url = await self.url(queue)
        for chunk in chunks(bodies, window):
            await asyncio.gather(
                *(self._send_batch(url, chunk[i : i + 10]) for i in range(0, len(chunk), 10))
            )

    async def _receive(self, url: str) -> list[dict[str, Any]]:
        reply = await self.client.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, VisibilityTimeout=30
        )
        return list(reply.get("Messages", []))

    async def _delete(self, url: str, messages: list[dict[str, Any]]) -> None:
        entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]
        await self.client.delete_message_batch(QueueUrl=url, Entries=entries)

    async def collect(self, queue: str, on_body: OnBody, stop: asyncio.Event, batch: int) -> None:
        url = await self.url(queue)
        while not stop.is_set():
            messages = await self._receive(url)
            for message in messages:
                on_body(message["Body"].encode())
            if messages:
                await self._delete(url, messages)

    async def serve(self, queue: str, stop: asyncio.Event, batch: int) -> None:
        url = await self.url(queue)
        # ReceiveMessage takes 10 at most: ``batch`` jobs are served by that many polls at once.
        await asyncio.gather(*(self._serve_one(url, stop) for _ in range(max(1, batch // 10))))

    async def _serve_one(self, url: str, stop: asyncio.Event) -> None:
        while not stop.is_set():
            messages = await self._receive(url)
            if not messages:
                continue
            by_queue: dict[str, list[bytes]] = {}
            for message in messages:
                reply_to, body = raw_result(message["Body"].encode(), self.worker_id)
                by_queue.setdefault(reply_to, []).append(body)
            urls = {q: await self.url(q) for q in by_queue}
            await asyncio.gather(*(self._send_batch(urls[q], b) for q, b in by_queue.items()))
            await self._delete(url, messages)  # every result is in before any job is deleted

    async def delete(self, queues: list[str]) -> None:
        for queue in queues:
            with contextlib.suppress(ClientError):
                await self.client.delete_queue(QueueUrl=await self.url(queue))


if __name__ == "__main__":
    main(SqsRaw(), "python -m bench.raw_sqs")
