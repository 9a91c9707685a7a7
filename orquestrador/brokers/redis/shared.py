"""Shared state (schedules) on Redis: one hash of records, one key per lease on the server's clock.

Durable as far as the server persists (RDB/AOF, as for the queues themselves).
"""

from __future__ import annotations

from typing import Any, Protocol

from orquestrador.brokers.redis.errors import mapped
from orquestrador.brokers.redis.names import text
from orquestrador.brokers.shared import SharedState

NAMESPACE = "orq:"  # redis:// keeps orq:agendas and orq:lease:<name>

# Take the lease if free, or extend it if this owner holds it; expiry on the server's clock.
_LEASE = """
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
  return 1
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Client(Protocol):
    @property
    def redis(self) -> Any: ...


class RedisState(SharedState):
    """Records in the hash ``<namespace>agendas``; lease ``<name>`` is the key
    ``<namespace>lease:<name>`` holding its owner with a server-side expiry (SET PX), so no host's
    clock matters. ``namespace`` keeps brokers sharing one server apart (bullmq:// has its own:
    its schedules publish BullMQ jobs, not stream entries)."""

    def __init__(self, broker: Client, namespace: str = NAMESPACE) -> None:
        self._broker = broker
        self._records = namespace + "agendas"
        self._leases = namespace + "lease:"

    async def get(self, key: str) -> bytes | None:
        with mapped(f"cannot read {key}"):
            value = await self._broker.redis.hget(self._records, key)
        return None if value is None else bytes(value)

    async def put(self, key: str, value: bytes) -> None:
        with mapped(f"cannot write {key}"):
            await self._broker.redis.hset(self._records, key, value)

    async def delete(self, key: str) -> bool:
        with mapped(f"cannot delete {key}"):
            return bool(await self._broker.redis.hdel(self._records, key))

    async def items(self, prefix: str) -> dict[str, bytes]:
        with mapped("cannot list the schedules"):
            records = await self._broker.redis.hgetall(self._records)
        pairs = ((text(k), bytes(v)) for k, v in records.items())
        return {k: v for k, v in pairs if k.startswith(prefix)}

    async def lease(self, name: str, owner: str, ttl: float) -> bool:
        ms = max(1, int(ttl * 1000))
        with mapped(f"cannot take the lease {name}"):
            return bool(await self._broker.redis.eval(_LEASE, 1, self._leases + name, owner, ms))

    async def holder(self, name: str) -> str | None:
        with mapped(f"cannot read the lease {name}"):
            value = await self._broker.redis.get(self._leases + name)
        return None if value is None else text(value)

    async def release(self, name: str, owner: str) -> None:
        with mapped(f"cannot release the lease {name}"):
            await self._broker.redis.eval(_RELEASE, 1, self._leases + name, owner)
