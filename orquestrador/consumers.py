"""Is anyone consuming a queue? What a notebook user is told when jobs would wait forever.

Why: a job sent to a queue no worker reads sits there without an error; a notebook that waits
on it looks hung. The launcher (before sending), the dashboard and ``wait()`` (after a few
seconds with nothing started) say so, with the command that starts a worker.
"""

from __future__ import annotations

import asyncio
import warnings

from orquestrador.brokers.base import Broker, QueueStats
from orquestrador.errors import BrokerError

WAIT_WARN_AFTER = 5.0  # seconds wait() lets pass with nothing started before it looks at the queue
STATS_TIMEOUT = 5.0


class NoConsumerWarning(UserWarning):
    """Jobs wait on a queue that no worker consumes; the message says how to start one."""


def worker_command(fila: str) -> str:
    """``escavador_http`` → ``orq worker escavador http``."""
    kind, _, nome = fila.partition("_")
    return f"orq worker {kind} {nome}" if nome else f"orq worker for {fila}"


def unserved(stats: QueueStats) -> str | None:
    """Why the queue's jobs will not start, or None if a worker is on it (or one cannot tell).

    A consumer busy on all its slots holds no pull request on NATS, so it counts as none there:
    jobs in flight are the sign of a worker at work.
    """
    if stats.consumers is None or stats.consumers > 0 or stats.in_flight > 0:
        return None
    return (
        f"no worker consumes queue {stats.queue}: its jobs wait until one starts "
        f"(in a terminal: {worker_command(stats.queue)})"
    )


async def check(broker: Broker, fila: str) -> str | None:
    """:func:`unserved` of ``fila`` now; None when the broker does not answer in time."""
    try:
        stats = await asyncio.wait_for(broker.stats(fila), STATS_TIMEOUT)
    except (BrokerError, TimeoutError):
        return None
    return unserved(stats)


def warn(message: str, stacklevel: int = 3) -> None:
    """Shown in the cell that waits (stderr), not in whichever cell ran last."""
    warnings.warn(message, NoConsumerWarning, stacklevel=stacklevel)
