"""Raw aiokafka baseline: a topic per queue and one consumer group, by hand.

``python -m bench.raw_kafka worker|producer|cleanup ...`` (see :mod:`bench.rawbase`).
A publish counts once every in-sync replica has it (``acks="all"``, idempotent producer, the
same settings as the toolkit); ``publish_many`` sends ``window`` records then waits for them
all. The worker takes up to ``--batch`` jobs with ``getmany``, sends their results, waits for
every acknowledgement, then commits the offsets after the batch (one commit per batch, in
order: a batch is finished before the next is read, so no finer bookkeeping is needed). Topics
have the toolkit's 8 partitions; keys are the envelopes' ``correlation_id``. Topics are
``benchraw.<queue>``, groups ``benchraw.<queue>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from bench.common import raw_result
from bench.rawbase import OnBody, RawClient, chunks, main

PARTITIONS = 8


def topic(queue: str) -> str:
    return "benchraw." + queue


def key(body: bytes) -> bytes:
    return str(json.loads(body)["correlation_id"]).encode()


class KafkaRaw(RawClient):
    def __init__(self) -> None:
        self.servers = ""
        self.producer: AIOKafkaProducer | None = None
        self.admin: AIOKafkaAdminClient | None = None

    async def connect(self, url: str) -> None:
        self.servers = url.split("://", 1)[1]
        self.producer = AIOKafkaProducer(bootstrap_servers=self.servers, acks="all", enable_idempotence=True,
                                         max_batch_size=1 << 20)  # fmt: skip
        self.admin = AIOKafkaAdminClient(bootstrap_servers=self.servers)
        await self.producer.start()
        await self.admin.start()

    async def close(self) -> None:
        if self.producer is not None:
            await self.producer.stop()
        if self.admin is not None:
            await self.admin.close()

    async def declare(self, queue: str) -> None:
        assert self.admin is not None
        with contextlib.suppress(TopicAlreadyExistsError):
            await self.admin.create_topics([NewTopic(topic(queue), PARTITIONS, 1)])
        await asyncio.sleep(0.5)  # leaders elected

    async def publish(self, queue: str, body: bytes) -> None:
        assert self.producer is not None
        await self.producer.send_and_wait(topic(queue), body, key=key(body))

    async def publish_many(self, queue: str, bodies: Iterable[bytes], window: int = 256) -> None:
        assert self.producer is not None
        for chunk in chunks(bodies, window):
            sent = [await self.producer.send(topic(queue), body, key=key(body)) for body in chunk]
            await asyncio.gather(*sent)

    async def _consumer(self, queue: str, batch: int) -> AIOKafkaConsumer:
        consumer = AIOKafkaConsumer(
            topic(queue), bootstrap_servers=self.servers, group_id=topic(queue), enable_auto_commit=False,
            auto_offset_reset="earliest", max_poll_records=batch,
        )  # fmt: skip
        await consumer.start()
        return consumer

    async def collect(self, queue: str, on_body: OnBody, stop: asyncio.Event, batch: int) -> None:
        consumer = await self._consumer(queue, batch)
        try:
            while not stop.is_set():
                got = await consumer.getmany(timeout_ms=200, max_records=batch)
                for records in got.values():
                    for record in records:
                        on_body(record.value)
                if got:
                    await consumer.commit()
        finally:
            await consumer.stop()

    async def serve(self, queue: str, stop: asyncio.Event, batch: int) -> None:
        assert self.producer is not None
        consumer = await self._consumer(queue, batch)
        try:
            while not stop.is_set():
                got = await consumer.getmany(timeout_ms=200, max_records=batch)
                sent = []
                for records in got.values():
                    for record in records:
                        reply_to, body = raw_result(record.value, self.worker_id)
                        sent.append(await self.producer.send(topic(reply_to), body, key=key(body)))
                if sent:
                    await asyncio.gather(*sent)  # every result is in before any job is committed
                    await consumer.commit()
        finally:
            await consumer.stop()

    async def delete(self, queues: list[str]) -> None:
        assert self.admin is not None
        with contextlib.suppress(Exception):
            await self.admin.delete_topics([topic(q) for q in queues])


if __name__ == "__main__":
    main(KafkaRaw(), "python -m bench.raw_kafka")
