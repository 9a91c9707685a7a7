"""Raw pika baseline: durable queues on the default exchange, publisher confirms, by hand.

``python -m bench.raw_rabbitmq worker|producer|cleanup ...`` (see :mod:`bench.rawbase`).
pika's ``AsyncioConnection`` (plain pika, callbacks on the running loop; no aio-pika). Messages
are persistent (delivery_mode 2) and a publish counts once its confirm arrived; confirms are
pipelined (one future per delivery tag, ``multiple`` confirms resolve many). The worker consumes
with ``basic_qos(prefetch=--batch)``, publishes each result on a confirm channel, and acks its
jobs once their results are confirmed, in delivery order, with one ``multiple=True`` ack for
every run of confirmed jobs.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
from collections.abc import Callable, Iterable
from typing import Any

import pika
from pika import spec
from pika.adapters.asyncio_connection import AsyncioConnection
from pika.channel import Channel

from bench.common import raw_result
from bench.rawbase import OnBody, RawClient, main

PERSISTENT = spec.BasicProperties(delivery_mode=2, content_type="application/json")


class _Confirms:
    """A confirm-mode channel: ``publish`` returns a future resolved by the broker's confirm."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.seq = 0
        self.pending: dict[int, asyncio.Future[None]] = {}

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        selected: asyncio.Future[None] = loop.create_future()
        self.channel.confirm_delivery(self._on_confirm, callback=lambda _f: selected.set_result(None))
        await selected

    def publish(self, queue: str, body: bytes) -> asyncio.Future[None]:
        self.seq += 1
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending[self.seq] = future
        self.channel.basic_publish("", queue, body, PERSISTENT)
        return future

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        ok = isinstance(method, spec.Basic.Ack)
        tag = method.delivery_tag
        tags = list(itertools.takewhile(lambda t: t <= tag, self.pending)) if method.multiple else [tag]
        for t in tags:
            future = self.pending.pop(t, None)
            if future is not None and not future.done():
                if ok:
                    future.set_result(None)
                else:
                    future.set_exception(RuntimeError(f"broker nacked publish {t}"))


class RabbitRaw(RawClient):
    def __init__(self) -> None:
        self.conn: AsyncioConnection | None = None
        self.confirms: _Confirms | None = None

    async def connect(self, url: str) -> None:
        loop = asyncio.get_running_loop()
        opened: asyncio.Future[AsyncioConnection] = loop.create_future()

        def failed(_conn: Any, exc: Any) -> None:
            if not opened.done():
                opened.set_exception(ConnectionError(str(exc)))

        AsyncioConnection(
            pika.URLParameters(url), on_open_callback=opened.set_result,
            on_open_error_callback=failed, custom_ioloop=loop,
        )  # fmt: skip
        self.conn = await asyncio.wait_for(opened, 15)
        self.confirms = _Confirms(await self._channel())
        await self.confirms.start()

    async def _channel(self) -> Channel:
        assert self.conn is not None
        opened: asyncio.Future[Channel] = asyncio.get_running_loop().create_future()
        self.conn.channel(on_open_callback=opened.set_result)
        return await asyncio.wait_for(opened, 15)

    async def close(self) -> None:
        if self.conn is not None and self.conn.is_open:
            loop = asyncio.get_running_loop()
            closed: asyncio.Future[None] = loop.create_future()
            self.conn.add_on_close_callback(lambda *_: closed.done() or closed.set_result(None))
            self.conn.close()
            await asyncio.wait_for(closed, 10)

    async def _call(self, start: Callable[[Callable[[Any], None]], None]) -> Any:
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        start(lambda frame: done.done() or done.set_result(frame))
        return await asyncio.wait_for(done, 15)

    def _pub(self) -> _Confirms:
        assert self.confirms is not None
        return self.confirms

    async def declare(self, queue: str) -> None:
        ch = self._pub().channel
        await self._call(lambda cb: ch.queue_declare(queue, durable=True, callback=cb))

    async def publish(self, queue: str, body: bytes) -> None:
        await self._pub().publish(queue, body)

    async def publish_many(self, queue: str, bodies: Iterable[bytes], window: int = 256) -> None:
        pub = self._pub()
        in_flight: collections.deque[asyncio.Future[None]] = collections.deque()
        for body in bodies:
            in_flight.append(pub.publish(queue, body))
            if len(in_flight) >= window:
                await in_flight.popleft()
        await asyncio.gather(*in_flight)

    async def _consume(self, queue: str, batch: int, on_message: Callable[..., None]) -> tuple[Channel, str]:
        ch = await self._channel()
        await self._call(lambda cb: ch.basic_qos(prefetch_count=batch, callback=cb))
        return ch, ch.basic_consume(queue, on_message)

    async def _cancel(self, ch: Channel, tag: str) -> None:
        await self._call(lambda cb: ch.basic_cancel(tag, callback=cb))
        await asyncio.sleep(0.05)  # let a multiple-ack still owed go out before the channel closes
        ch.close()

    async def collect(self, queue: str, on_body: OnBody, stop: asyncio.Event, batch: int) -> None:
        def on_message(ch: Channel, method: Any, _props: Any, body: bytes) -> None:
            on_body(body)
            ch.basic_ack(method.delivery_tag)

        ch, tag = await self._consume(queue, batch, on_message)
        await stop.wait()
        await self._cancel(ch, tag)

    async def serve(self, queue: str, stop: asyncio.Event, batch: int) -> None:
        pub = self._pub()
        waiting: collections.deque[tuple[asyncio.Future[None], int]] = collections.deque()
        holder: list[Channel] = []

        def settle(_future: asyncio.Future[None]) -> None:
            last = 0
            while waiting and waiting[0][0].done():
                future, last = waiting.popleft()
                future.result()  # a nacked result must not lead to an ack
            if last:
                holder[0].basic_ack(last, multiple=True)

        def on_message(_ch: Channel, method: Any, _props: Any, body: bytes) -> None:
            reply_to, result = raw_result(body, self.worker_id)
            future = pub.publish(reply_to, result)
            waiting.append((future, method.delivery_tag))
            future.add_done_callback(settle)

        ch, tag = await self._consume(queue, batch, on_message)
        holder.append(ch)
        await stop.wait()
        await self._cancel(ch, tag)

    async def delete(self, queues: list[str]) -> None:
        ch = self._pub().channel
        for queue in queues:
            await self._call(lambda cb, q=queue: ch.queue_delete(q, callback=cb))


if __name__ == "__main__":
    main(RabbitRaw(), "python -m bench.raw_rabbitmq")
