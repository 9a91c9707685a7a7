"""Delayed retry for brokers that cannot hold one message back (``delayed_redelivery=False``).

``nack(delay)`` publishes a copy (count plus one) to a *bucket* ``<queue>.retry.<ms>``, a queue
whose messages return to ``<queue>`` ``ms`` milliseconds after they entered it (RabbitMQ: a
per-queue TTL that dead-letters back), waits for the confirm, then acks the original. Delays are
rounded up to two significant digits, so jittered backoffs share a few buckets; an adapter lets a
bucket remove itself :data:`BUCKET_GRACE_MS` after its last use. Waiting copies are not counted
in ``stats().depth``, and ``delete(queue)`` removes its buckets too.
"""

from __future__ import annotations

import math
from typing import Protocol

BUCKET_GRACE_MS = 600_000
BUCKET_INFIX = ".retry."


class Buckets(Protocol):
    async def retry_bucket(self, queue: str, delay: float) -> str:
        """Declare (again: that renews it) the bucket of ``queue`` for ``delay``; its name."""


def bucket_ms(delay: float) -> int:
    """Milliseconds of the retry bucket for ``delay``: rounded up to two significant digits."""
    ms = max(1, math.ceil(delay * 1000))
    step = int(10 ** max(0, len(str(ms)) - 2))
    return -(-ms // step) * step


def bucket_ms_below(delay: float) -> int:
    """Milliseconds of the largest bucket not longer than ``delay`` (two significant digits)."""
    ms = max(1, math.floor(delay * 1000))
    step = int(10 ** max(0, len(str(ms)) - 2))
    return ms // step * step


def bucket_name(queue: str, delay: float) -> str:
    return f"{queue}{BUCKET_INFIX}{bucket_ms(delay)}"


def bucket_of(name: str) -> tuple[str, int] | None:
    """``(queue, ms)`` if ``name`` is a retry bucket, else None."""
    queue, infix, ms = name.rpartition(BUCKET_INFIX)
    if not infix or not queue or not ms.isdigit():
        return None
    return queue, int(ms)
