"""The one place aiokafka's failures become the toolkit's: :func:`mapped` around every driver
call, and :func:`unreachable` for a first connection that fails.

A lost or refused connection is ``BrokerUnavailable``; any other Kafka error is ``BrokerError``.
Conditions callers expect (a topic that exists already, a commit refused by a rebalance) are
named here so no other module imports the driver's exceptions.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

from aiokafka import errors as kerr

from orquestrador.brokers.tls import tls_failure
from orquestrador.errors import BrokerError, BrokerUnavailable

T = TypeVar("T")

TopicExists = kerr.TopicAlreadyExistsError
UnknownTopic = kerr.UnknownTopicOrPartitionError
# A commit the group refused: the partition moved, or a rebalance is under way.
CommitRefused = (kerr.CommitFailedError, kerr.IllegalStateError, kerr.RebalanceInProgressError,
                 kerr.IllegalGenerationError, kerr.UnknownMemberIdError)  # fmt: skip
# What a call may raise that cleanup and best-effort events only log.
DRIVER_ERRORS = (kerr.KafkaError, OSError)
_UNAVAILABLE = (kerr.KafkaConnectionError, kerr.NoBrokersAvailable, kerr.KafkaTimeoutError,
                kerr.RequestTimedOutError, kerr.NodeNotReadyError, OSError)  # fmt: skip


def short(exc: BaseException) -> str:
    """One line: the error's name and message (aiokafka's are often just the class)."""
    text = " ".join(str(exc).split())
    name = type(exc).__name__
    if not text or text == name:
        return name
    return (text if text.startswith(name) else f"{name}: {text}")[:300]


@contextlib.contextmanager
def mapped(what: str) -> Iterator[None]:
    """Driver errors inside become BrokerUnavailable / BrokerError(``what``: reason), the cause kept."""
    try:
        yield
    except _UNAVAILABLE as exc:
        raise BrokerUnavailable(f"{what}: lost the Kafka connection ({short(exc)})") from exc
    except kerr.KafkaError as exc:
        raise BrokerError(f"{what}: {short(exc)}") from exc


def unreachable(exc: BaseException, where: str) -> BrokerUnavailable:
    """One line for a first connection that failed (``where``: the redacted URL)."""
    if (refused := tls_failure(exc)) is not None:
        return BrokerUnavailable(f"cannot connect to Kafka at {where}: {refused}")
    if isinstance(exc, kerr.AuthenticationFailedError | kerr.UnsupportedSaslMechanismError):
        return BrokerUnavailable(
            f"Kafka at {where} refused the login ({type(exc).__name__}): check the user and password "
            "in the URL and ?sasl_mechanism="
        )
    return BrokerUnavailable(f"cannot reach Kafka at {where}: {short(exc)}; is the server running?")


async def retried(call: Callable[[], Awaitable[T]], what: str, *, tries: int = 20) -> T:
    """``call`` inside :func:`mapped`, again while Kafka says to retry (a coordinator still
    being elected, a group loading, a leader moving): up to ``tries`` times, 0.1 s to 1 s apart."""
    delay = 0.1
    for attempt in range(tries):
        try:
            with mapped(what):
                return await call()
        except BrokerError as exc:
            cause = exc.__cause__
            if attempt == tries - 1 or not getattr(cause, "retriable", False):
                raise
        await asyncio.sleep(delay)
        delay = min(1.0, delay * 2)
    raise AssertionError("unreachable")
