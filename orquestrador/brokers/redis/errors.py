"""The one place Redis driver errors become the toolkit's: :func:`mapped` around every driver call.

A lost connection (after redis-py's own retries), or a Redis Cluster none of whose nodes answers
or that serves no node for a slot, is ``BrokerUnavailable``; any other Redis error is
``BrokerError``. A consumer group that vanished (``NOGROUP``: the queue was purged or deleted
meanwhile) is the one condition callers may ask to pass: there is nothing left to settle.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import redis.exceptions as rexc

from orquestrador.brokers.tls import tls_failure
from orquestrador.errors import BrokerError, BrokerUnavailable

# Expected, and handled by callers by name (re-exported so no other module imports the driver's).
ResponseError = rexc.ResponseError
# What a call may raise that cleanup and best-effort events only log (the cluster client's own
# exceptions are not RedisErrors).
DRIVER_ERRORS = (rexc.RedisError, rexc.RedisClusterException, OSError)
# The cluster, or the part of it serving a key, is out of reach.
_CLUSTER_GONE = (rexc.SlotNotCoveredError, rexc.ClusterDownError)


def is_nogroup(exc: BaseException) -> bool:
    return isinstance(exc, rexc.ResponseError) and "NOGROUP" in str(exc)  # also inside pipelines


@contextlib.contextmanager
def mapped(what: str, *, nogroup_ok: bool = False) -> Iterator[None]:
    """Driver errors inside become BrokerUnavailable / BrokerError(``what``: reason), the cause kept.

    ``nogroup_ok``: the queue was purged or deleted meanwhile, so there is nothing to settle.
    """
    try:
        yield
    except (rexc.ConnectionError, rexc.TimeoutError, OSError) as exc:
        raise BrokerUnavailable(f"{what}: lost the Redis connection ({exc})") from exc
    except _CLUSTER_GONE as exc:
        raise BrokerUnavailable(f"{what}: the Redis Cluster does not serve it now ({exc})") from exc
    except (rexc.RedisError, rexc.RedisClusterException) as exc:
        if not (nogroup_ok and is_nogroup(exc)):
            raise BrokerError(f"{what}: {exc}") from exc


def unreachable(exc: BaseException, where: str, reason: str) -> BrokerUnavailable:
    """One line for a first connection that failed (``reason``: the error, secrets scrubbed)."""
    if (refused := tls_failure(exc)) is not None:
        return BrokerUnavailable(f"cannot connect to Redis at {where}: {refused}")
    if isinstance(exc, rexc.AuthenticationError) or "AUTH" in str(exc).upper():
        hint = "check the user and password in the URL"
    else:
        hint = "is the server running?"
    return BrokerUnavailable(f"cannot reach Redis at {where}: {reason}; {hint}")
