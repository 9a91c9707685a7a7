"""Shared state on the broker: small records every process using the broker reads, and leases.

Schedules (:mod:`orquestrador.agenda`) keep their definitions and their last firing here, so
they survive a restart of the notebook, the scheduler and the broker, and two schedulers elect
one leader through a lease the broker holds. Where the state lives is the adapter's business
(:meth:`Broker.shared_state`): a NATS KV bucket, a Redis hash and key; the memory broker keeps
it in the process (:class:`LocalState`). Values are opaque bytes; keys are short ASCII words.
"""

from __future__ import annotations

import abc
import threading
import time
from typing import ClassVar


class SharedState(abc.ABC):
    """A small key-value store and named leases, shared by every process on one broker."""

    @abc.abstractmethod
    async def get(self, key: str) -> bytes | None: ...

    @abc.abstractmethod
    async def put(self, key: str, value: bytes) -> None:
        """Write ``value`` durably (returns once the broker holds it)."""

    @abc.abstractmethod
    async def delete(self, key: str) -> bool:
        """Remove ``key``; False when it was not there."""

    @abc.abstractmethod
    async def items(self, prefix: str) -> dict[str, bytes]:
        """Every key starting with ``prefix`` and its value."""

    @abc.abstractmethod
    async def lease(self, name: str, owner: str, ttl: float) -> bool:
        """Take lease ``name`` for ``owner`` for ``ttl`` seconds, or extend it if ``owner`` holds
        it; False while someone else holds it. At most one owner holds a lease at any moment, as
        the broker sees it: a holder that cannot renew in time must stop acting on it."""

    @abc.abstractmethod
    async def holder(self, name: str) -> str | None:
        """Who holds lease ``name`` now, if anyone."""

    @abc.abstractmethod
    async def release(self, name: str, owner: str) -> None:
        """Give the lease up at once (a clean stop), if ``owner`` holds it."""

    def still_held(self, name: str) -> bool:
        """False once this process knows it lost lease ``name`` without asking the broker (a
        connection-held lease whose connection dropped, a rebalance): its holder stops at once
        instead of at the end of the time it counted on."""
        return True

    async def close(self) -> None:  # noqa: B027 - most keep nothing open of their own
        """Close what the state opened beside the broker's own connection."""


class LocalState(SharedState):
    """State inside this process, per namespace: for the in-memory broker."""

    _spaces: ClassVar[dict[str, dict[str, bytes]]] = {}
    _leases: ClassVar[dict[tuple[str, str], tuple[str, float]]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, namespace: str) -> None:
        self._namespace = namespace
        with self._lock:
            self._data = self._spaces.setdefault(namespace, {})

    async def get(self, key: str) -> bytes | None:
        with self._lock:
            return self._data.get(key)

    async def put(self, key: str, value: bytes) -> None:
        with self._lock:
            self._data[key] = value

    async def delete(self, key: str) -> bool:
        with self._lock:
            return self._data.pop(key, None) is not None

    async def items(self, prefix: str) -> dict[str, bytes]:
        with self._lock:
            return {k: v for k, v in self._data.items() if k.startswith(prefix)}

    async def lease(self, name: str, owner: str, ttl: float) -> bool:
        key, now = (self._namespace, name), time.monotonic()
        with self._lock:
            current = self._leases.get(key)
            if current is not None and current[0] != owner and current[1] > now:
                return False
            self._leases[key] = (owner, now + ttl)
            return True

    async def holder(self, name: str) -> str | None:
        with self._lock:
            current = self._leases.get((self._namespace, name))
        return current[0] if current is not None and current[1] > time.monotonic() else None

    async def release(self, name: str, owner: str) -> None:
        with self._lock:
            current = self._leases.get((self._namespace, name))
            if current is not None and current[0] == owner:
                del self._leases[(self._namespace, name)]


__all__ = ["LocalState", "SharedState"]
