"""Rate-limit slots in a NATS KV bucket, shared by every worker on the server."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from nats.js import JetStreamContext

from orquestrador.brokers.nats.errors import KeyNotFound, WrongLastSequence, mapped
from orquestrador.brokers.nats.names import KV_KEY, RATE_LIMIT_BUCKET
from orquestrador.brokers.slots import Slots
from orquestrador.errors import BrokerError


class NatsSlots(Slots):
    """Slots in the KV bucket ORQ_RATELIMIT, updated with compare-and-set: shared by every worker
    on this server. Clocks of worker machines are assumed roughly in sync."""

    def __init__(self, js: Callable[[], JetStreamContext], *, replicas: int = 1) -> None:
        self._js = js
        self._replicas = replicas
        self._kv: Any = None

    async def reserve(self, key: str, interval: float) -> float:
        name = KV_KEY.sub("_", key).strip(".") or "_"
        with mapped(f"cannot reserve a rate-limit slot for {key}"):
            if self._kv is None:
                self._kv = await self._js().create_key_value(
                    bucket=RATE_LIMIT_BUCKET, history=1, ttl=3600, replicas=self._replicas
                )
            for _ in range(50):
                now = time.time()
                try:
                    entry = await self._kv.get(name)
                    slot, revision = max(float(entry.value or b"0"), now), entry.revision
                except KeyNotFound:
                    slot, revision = now, None
                value = repr(slot + interval).encode()
                try:
                    if revision is None:
                        await self._kv.create(name, value)
                    else:
                        await self._kv.update(name, value, last=revision)
                    return slot - now
                except WrongLastSequence:
                    continue  # another worker took this slot; read again
        raise BrokerError(f"rate-limit slot for {key} kept changing under contention")


