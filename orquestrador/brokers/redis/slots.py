"""Rate-limit slots on Redis: one key per limit, on the server's clock."""

from __future__ import annotations

from typing import Any, Protocol

from orquestrador.brokers.redis.errors import mapped
from orquestrador.brokers.slots import Slots


class Scripts(Protocol):
    scripts: dict[str, Any]


class RedisSlots(Slots):
    """Slots in ``orq:rl:<key>`` on the server's clock: shared by every worker."""

    def __init__(self, broker: Scripts) -> None:
        self._broker = broker

    async def reserve(self, key: str, interval: float) -> float:
        with mapped(f"reserve a rate-limit slot for {key}"):
            ms = max(1, int(interval * 1000))
            waited = await self._broker.scripts["slot"](keys=[f"orq:rl:{key}"], args=[ms])
        return int(waited) / 1000
