"""The one place BullMQ's errors become the toolkit's: :func:`mapped` around every call into it.

The ``bullmq`` package talks to Redis through redis-py, so a lost connection is the Redis
adapter's ``BrokerUnavailable`` and any other Redis error ``BrokerError``. Its Lua scripts answer
a job that is no longer ours (its lock taken by another worker after a stall, the job removed
meanwhile) with a ``TypeError`` naming the job: that is ``LeaseLost``, which callers settling a
job may let pass, since whoever holds the job now settles it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from orquestrador.brokers.redis.errors import DRIVER_ERRORS, unreachable
from orquestrador.brokers.redis.errors import mapped as redis_mapped
from orquestrador.errors import BrokerError

# What BullMQ's scripts say of a job this consumer no longer holds (bullmq.scripts.finishedErrors).
_NOT_OURS = ("Missing lock", "Lock mismatch", "Missing key for job", "is not in the")
_SCRIPT_REFUSALS = ("Unknown code", "pending dependencies", "parent job", "Cannot ")


class LeaseLost(BrokerError):
    """The job was redelivered elsewhere (or removed) before this consumer settled it."""


@contextlib.contextmanager
def mapped(what: str) -> Iterator[None]:
    """Redis errors as the Redis adapter maps them; BullMQ's "not your job" as :class:`LeaseLost`."""
    with redis_mapped(what):
        try:
            yield
        except TypeError as exc:
            if any(marker in str(exc) for marker in _NOT_OURS):
                raise LeaseLost(f"{what}: {exc}") from exc
            if any(marker in str(exc) for marker in _SCRIPT_REFUSALS):
                raise BrokerError(f"{what}: {exc}") from exc
            raise  # not BullMQ's answer: a bug, shown as one


__all__ = ["DRIVER_ERRORS", "LeaseLost", "mapped", "unreachable"]
