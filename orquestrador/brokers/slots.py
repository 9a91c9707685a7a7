"""Rate-limit slots: "when may the next call for this key go", shared as widely as the broker allows.

A plugin's ``rate_limit`` (e.g. per scraped domain) reserves the next free slot of its key,
``interval`` seconds after the previous one, and waits until then. Where the slots live is the
broker's business: a NATS KV bucket or a Redis key is shared by every worker process and
machine (``Capabilities.shared_slots``); elsewhere they live in the process (:class:`LocalSlots`),
so N worker processes allow N times the rate. :meth:`Broker.slots` says which an adapter uses.
"""

from __future__ import annotations

import abc
import threading
import time
from typing import ClassVar


class Slots(abc.ABC):
    """Reserve slots of named keys; each adapter that can share them implements this."""

    @abc.abstractmethod
    async def reserve(self, key: str, interval: float) -> float:
        """Take the next free slot of ``key``, ``interval`` seconds after the previous one;
        returns how long to wait for it (0 when it is now)."""


class LocalSlots(Slots):
    """Slots in this process only, shared by every broker object in it."""

    _slots: ClassVar[dict[str, float]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    async def reserve(self, key: str, interval: float) -> float:
        with self._lock:
            now = time.time()
            slot = max(self._slots.get(key, 0.0), now)
            self._slots[key] = slot + interval
        return slot - now


__all__ = ["LocalSlots", "Slots"]
