"""FastStream 0.7 as a peer: the same work on the same brokers, written the way FastStream is used.

``python -m bench.peer_faststream worker|producer|cleanup --url URL ...`` (the commands and
scenarios of :mod:`bench.rawbase`; the broker follows from the URL's scheme; the worker also takes
``--results``, its publisher's queue). Needs ``pip install -e ".[bench]"``.

The worker is one subscriber and one publisher decorating ``async def handle(body: dict) -> dict``:
FastStream decodes the job's JSON, the handler returns the same result envelope the raw worker
writes (:func:`bench.common.result_envelope`), the publisher encodes it and publishes it to the
results queue, and only after that publish returned is the job acked (``AckPolicy.REJECT_ON_ERROR``,
FastStream's default: the acknowledgement middleware exits after the handler's publishers). The
producer is a FastStream broker too: ``broker.publish`` of the same request bodies (256 in
flight; on Redis through a pipeline) and a subscriber on the results queue, running as many
handlers as the worker, that hands each body to the scenario, then acks. Per-message logging
is at DEBUG (``log_level``), so the default INFO logger skips it.

Per broker (BENCHMARKS.md lists the differences from the raw baseline):
- NATS: a JetStream work-queue stream per queue (``JStream``, file storage), a durable pull
  consumer (``PullSub(batch_size=--batch)``: each fetched batch is handled concurrently, the next
  fetch waits for it); publishes go through ``js.publish`` and wait for the PubAck.
- Redis: a stream per queue read by a consumer group (``StreamSub(group, consumer,
  max_records=--batch)``) with ``max_workers=--batch`` handlers in flight; XADD replies count as
  confirmation; the job is XACKed after handling (never XDELed: FastStream only acks).
- RabbitMQ: a durable queue on the default exchange, ``prefetch_count=--batch`` (aio-pika runs a
  task per delivery), persistent messages (``persist=True``) on a channel with publisher confirms.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Iterable
from typing import Annotated, Any

from faststream import Context
from faststream.middlewares import AckPolicy

from bench.common import result_envelope
from bench.rawbase import OnBody, RawClient, build_parser, chunks, run

ACK = AckPolicy.REJECT_ON_ERROR  # FastStream's default, spelled out: ack once handled and published
QUIET = logging.DEBUG  # the level FastStream logs each message at (hidden by its INFO logger)
# The result subscriber's concurrency (the scenarios ask for 256, a raw client's fetch size): as
# many handlers as the worker runs; 256 concurrent FastStream handlers cost more than they save.
COLLECT_CONCURRENCY = 32


class FastStreamClient(RawClient):
    """A FastStream broker behind the scenarios' interface; one subclass per broker."""

    worker_id = f"{socket.gethostname()}:{os.getpid()}:faststream"

    def __init__(self, results: str = "") -> None:
        self.results = results
        self.broker: Any = None

    @abc.abstractmethod
    def _new_broker(self, url: str) -> Any: ...

    @abc.abstractmethod
    def _subscriber(self, queue: str, batch: int) -> Any:
        """A subscriber on ``queue`` that acks each message after its handler (and publishers)."""

    @abc.abstractmethod
    def _publisher(self, queue: str) -> Any:
        """A publisher to ``queue`` that returns once the broker confirmed the message."""

    async def connect(self, url: str) -> None:
        self.broker = self._new_broker(url)
        await self.broker.connect()

    async def close(self) -> None:
        if self.broker is not None:
            await self.broker.stop()

    async def publish_many(self, queue: str, bodies: Iterable[bytes], window: int = 256) -> None:
        for chunk in chunks(bodies, window):
            await asyncio.gather(*(self.publish(queue, body) for body in chunk))

    async def collect(self, queue: str, on_body: OnBody, stop: asyncio.Event, batch: int) -> None:
        @self._subscriber(queue, min(batch, COLLECT_CONCURRENCY))
        async def collected(message: Annotated[Any, Context("message")]) -> None:
            on_body(message.body)

        await self.broker.start()
        await stop.wait()

    async def serve(self, queue: str, stop: asyncio.Event, batch: int) -> None:
        if not self.results:
            raise SystemExit("the FastStream worker needs --results (its publisher's queue)")
        worker = self.worker_id

        @self._subscriber(queue, batch)
        @self._publisher(self.results)
        async def handle(body: dict[str, Any]) -> dict[str, Any]:
            return result_envelope(body, worker)

        await self.broker.start()
        await stop.wait()


class NatsPeer(FastStreamClient):
    @staticmethod
    def _stream(queue: str) -> Any:
        from faststream.nats import JStream, RetentionPolicy, StorageType

        return JStream(
            "BENCHFS_" + queue, subjects=[queue],
            retention=RetentionPolicy.WORK_QUEUE, storage=StorageType.FILE,
        )  # fmt: skip

    def _new_broker(self, url: str) -> Any:
        from faststream.nats import NatsBroker

        return NatsBroker(url, log_level=QUIET)

    async def declare(self, queue: str) -> None:
        stream = self._stream(queue)
        await self.broker.connection.jetstream().add_stream(stream.config, subjects=[queue])

    def _subscriber(self, queue: str, batch: int) -> Any:
        from faststream.nats import PullSub

        return self.broker.subscriber(
            queue, stream=self._stream(queue), durable="workers",
            pull_sub=PullSub(batch_size=batch), ack_policy=ACK,
        )  # fmt: skip

    def _publisher(self, queue: str) -> Any:
        return self.broker.publisher(queue, stream=self._stream(queue))

    async def publish(self, queue: str, body: bytes) -> None:
        await self.broker.publish(body, queue, stream="BENCHFS_" + queue)

    async def delete(self, queues: list[str]) -> None:
        import nats.js.errors

        js = self.broker.connection.jetstream()
        for queue in queues:
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await js.delete_stream("BENCHFS_" + queue)


class RedisPeer(FastStreamClient):
    GROUP = "workers"

    def _new_broker(self, url: str) -> Any:
        from faststream.redis import RedisBroker

        return RedisBroker(url, log_level=QUIET, max_connections=1024)

    async def declare(self, queue: str) -> None:
        import redis.exceptions

        # From the stream's start: a result XADDed before the collector's subscriber ran is kept.
        with contextlib.suppress(redis.exceptions.ResponseError):  # BUSYGROUP: already there
            await self.broker._connection.xgroup_create(queue, self.GROUP, "0", mkstream=True)

    def _subscriber(self, queue: str, batch: int) -> Any:
        from faststream.redis import StreamSub

        sub = StreamSub(queue, group=self.GROUP, consumer=f"c-{os.getpid()}", max_records=batch)
        return self.broker.subscriber(stream=sub, max_workers=batch, ack_policy=ACK)

    def _publisher(self, queue: str) -> Any:
        return self.broker.publisher(stream=queue)

    async def publish(self, queue: str, body: bytes) -> None:
        await self.broker.publish(body, stream=queue)

    async def publish_many(self, queue: str, bodies: Iterable[bytes], window: int = 256) -> None:
        # FastStream's own batching for Redis: publishes queued on a pipeline, one round trip each.
        for chunk in chunks(bodies, window):
            async with self.broker._connection.pipeline(transaction=False) as pipe:
                for body in chunk:
                    await self.broker.publish(body, stream=queue, pipeline=pipe)
                await pipe.execute()

    async def delete(self, queues: list[str]) -> None:
        if queues:
            await self.broker._connection.delete(*queues)


class RabbitPeer(FastStreamClient):
    @staticmethod
    def _queue(queue: str) -> Any:
        from faststream.rabbit import RabbitQueue

        return RabbitQueue(queue, durable=True)

    def _new_broker(self, url: str) -> Any:
        from faststream.rabbit import RabbitBroker

        return RabbitBroker(url, log_level=QUIET)  # its default channel has publisher confirms

    async def declare(self, queue: str) -> None:
        await self.broker.declare_queue(self._queue(queue))

    def _subscriber(self, queue: str, batch: int) -> Any:
        from faststream.rabbit import Channel

        return self.broker.subscriber(
            self._queue(queue), channel=Channel(prefetch_count=batch), ack_policy=ACK
        )

    def _publisher(self, queue: str) -> Any:
        return self.broker.publisher(self._queue(queue), persist=True)

    async def publish(self, queue: str, body: bytes) -> None:
        await self.broker.publish(body, self._queue(queue), persist=True)

    async def delete(self, queues: list[str]) -> None:
        channel = await self.broker._connection.channel()
        try:
            for queue in queues:
                await channel.queue_delete(queue)
        finally:
            await channel.close()


PEERS: dict[str, type[FastStreamClient]] = {
    "nats": NatsPeer, "tls": NatsPeer, "redis": RedisPeer, "rediss": RedisPeer,
    "amqp": RabbitPeer, "amqps": RabbitPeer,
}  # fmt: skip


def main() -> None:
    args = build_parser("python -m bench.peer_faststream").parse_args()
    scheme = args.url.partition("://")[0]
    if scheme not in PEERS:
        raise SystemExit(f"no FastStream peer for {scheme}:// URLs (nats, redis, amqp)")
    run(PEERS[scheme](getattr(args, "results", "")), args)


if __name__ == "__main__":
    main()
