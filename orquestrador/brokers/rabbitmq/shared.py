"""Shared state (schedules) on RabbitMQ, which has no key-value store: a log queue and leases
held by the connection.

Records are versions appended to ``orq.agendas``, a durable queue (of the broker's queue type)
with a single active consumer, the pattern of :mod:`.queue_registry`: a reader appends a marker,
reads up to it (readers take turns), keeps the last version of each key, acks away the older
versions, tombstones and its marker, and closes its channel, which puts the rest back in place.
A lease is an exclusive queue ``orq.lease.<name>``: the broker lets one connection declare it
and deletes it when that connection ends (a killed process lets go at once), and its owner is
recorded as ``lease.<name>`` for :meth:`holder`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from pika import spec

from orquestrador.brokers.rabbitmq.channel import NOT_FOUND, RESOURCE_LOCKED, AsyncChannel, ChannelClosed, T
from orquestrador.brokers.rabbitmq.errors import mapped
from orquestrador.brokers.shared import SharedState

LOG = "orq.agendas"
LEASE_QUEUE = "orq.lease."
PERSISTENT = spec.BasicProperties(delivery_mode=2)


class Admin(Protocol):
    queue_arguments: dict[str, Any]
    reconnects: int

    async def admin(self, op: Callable[[AsyncChannel], Awaitable[T]]) -> T: ...

    async def send(self, routing_key: str, body: bytes, props: spec.BasicProperties) -> None: ...

    async def open_channel(self) -> AsyncChannel: ...


class RabbitState(SharedState):
    """Records in the log queue ``orq.agendas``; leases as exclusive queues (see the module)."""

    def __init__(self, broker: Admin) -> None:
        self.broker = broker
        self._declared = False
        self._held: dict[str, int] = {}  # lease name -> the broker's reconnect count when taken

    async def _ensure(self) -> None:
        if not self._declared:
            arguments = {"x-single-active-consumer": True, **self.broker.queue_arguments}
            with mapped(f"cannot declare {LOG}"):
                await self.broker.admin(lambda ch: ch.declare(LOG, arguments=arguments))
            self._declared = True

    async def _append(self, key: str, value: bytes | None) -> None:
        await self._ensure()
        record = {"k": key, "v": None if value is None else base64.b64encode(value).decode()}
        with mapped(f"cannot write {key}"):
            await self.broker.send(LOG, json.dumps(record).encode(), PERSISTENT)

    async def _snapshot(self) -> dict[str, bytes]:
        """Every live record, compacting the log on the way (see the module docstring)."""
        await self._ensure()
        marker = json.dumps({"m": f"{time.time():.0f}:{uuid.uuid4().hex}"}).encode()
        read: list[tuple[int, dict[str, Any]]] = []

        def on_message(_raw: Any, method: Any, _props: Any, body: bytes) -> None:
            if done.done():
                return
            try:
                read.append((method.delivery_tag, json.loads(body)))
            except ValueError:
                read.append((method.delivery_tag, {}))  # not ours: dropped at compaction
            if body == marker:
                done.set_result(None)

        with mapped(f"cannot read {LOG}"):
            await self.broker.send(LOG, marker, PERSISTENT)
            channel = await self.broker.open_channel()
            done = channel.future()
            try:
                await channel.consume(LOG, on_message)
                await asyncio.wait_for(done, 30)
                latest: dict[str, tuple[int, str | None]] = {}
                drop: list[int] = []
                for tag, record in read:
                    if "k" not in record:  # our marker, another reader's (it died), or garbage
                        if record.get("m") == json.loads(marker)["m"] or _stale(record):
                            drop.append(tag)
                        continue
                    if (previous := latest.get(record["k"])) is not None:
                        drop.append(previous[0])
                    latest[record["k"]] = (tag, record.get("v"))
                drop += [tag for tag, value in latest.values() if value is None]
                for tag in drop:
                    channel.send(channel.raw.basic_ack, tag)
            finally:
                await channel.close()
        return {k: base64.b64decode(v) for k, (_tag, v) in latest.items() if v is not None}

    async def get(self, key: str) -> bytes | None:
        return (await self._snapshot()).get(key)

    async def put(self, key: str, value: bytes) -> None:
        await self._append(key, value)

    async def delete(self, key: str) -> bool:
        if await self.get(key) is None:
            return False
        await self._append(key, None)
        return True

    async def items(self, prefix: str) -> dict[str, bytes]:
        return {k: v for k, v in (await self._snapshot()).items() if k.startswith(prefix)}

    async def lease(self, name: str, owner: str, ttl: float) -> bool:
        queue = LEASE_QUEUE + name
        if self._held.get(name) == self.broker.reconnects:
            return True  # the queue lives as long as this connection; no renewal needed
        with mapped(f"cannot take the lease {name}"):
            try:
                await self.broker.admin(lambda ch: ch.declare(queue, durable=False, exclusive=True))
            except ChannelClosed as exc:
                if exc.code == RESOURCE_LOCKED:
                    self._held.pop(name, None)
                    return False
                raise
        self._held[name] = self.broker.reconnects
        await self._append(f"lease.{name}", owner.encode())
        return True

    def still_held(self, name: str) -> bool:
        return self._held.get(name) == self.broker.reconnects

    async def holder(self, name: str) -> str | None:
        with mapped(f"cannot read the lease {name}"):
            try:
                await self.broker.admin(lambda ch: ch.declare(LEASE_QUEUE + name, passive=True))
            except ChannelClosed as exc:
                if exc.code == NOT_FOUND:
                    return None
                if exc.code != RESOURCE_LOCKED:
                    raise
        owner = await self.get(f"lease.{name}")
        return owner.decode() if owner is not None else None

    async def release(self, name: str, owner: str) -> None:
        if self._held.pop(name, None) is None:
            return
        with mapped(f"cannot release the lease {name}"):
            await self.broker.admin(lambda ch: ch.delete(LEASE_QUEUE + name))


def _stale(record: dict[str, Any]) -> bool:
    """Another reader's marker left by a reader that died (minutes old), or not a record at all."""
    stamp = str(record.get("m", "")).partition(":")[0]
    return not stamp.isdigit() or time.time() - int(stamp) > 300
