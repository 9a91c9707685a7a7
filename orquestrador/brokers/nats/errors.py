"""The one place NATS driver errors become the toolkit's: :func:`mapped` around every driver call.

Conditions a caller expects (a message already gone, a stream that exists) are caught inside the
``with`` block by the caller; whatever else the driver raises leaves as ``BrokerError``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Iterator
from typing import Any

import nats.errors
import nats.js.errors

from orquestrador.errors import BrokerError

log = logging.getLogger("orquestrador.brokers.nats")

# Expected, and handled by callers by name (re-exported so no other module imports the driver's).
NotFound = nats.js.errors.NotFoundError
BadRequest = nats.js.errors.BadRequestError
KeyNotFound = nats.js.errors.KeyNotFoundError
WrongLastSequence = nats.js.errors.KeyWrongLastSequenceError
AlreadyAcked = nats.errors.MsgAlreadyAckdError
FetchTimeout = (TimeoutError, nats.errors.TimeoutError)
DriverError = nats.errors.Error


@contextlib.contextmanager
def mapped(what: str, *, passing: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """Driver errors inside become BrokerError(``what``: reason), the cause kept; those in
    ``passing`` (conditions the caller handles, such as a fetch timing out) leave as they are."""
    try:
        yield
    except passing:
        raise
    except nats.errors.MaxPayloadError as exc:
        raise BrokerError(f"message too large for NATS: {what}: {exc}") from exc
    except nats.errors.Error as exc:
        raise BrokerError(f"{what}: {exc}") from exc


async def quietly(awaitable: Awaitable[Any]) -> None:
    """Cleanup that may fail without consequence (unsubscribe, drain, nak of a spare message)."""
    try:
        await awaitable
    except (TimeoutError, nats.errors.Error, OSError) as exc:
        log.debug("ignored during cleanup: %s", exc)


def auth_refused(exc: BaseException) -> bool:
    return isinstance(exc, nats.errors.AuthorizationError) or "authorization violation" in str(exc).lower()


