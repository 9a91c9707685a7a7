"""The one place RabbitMQ failures become the toolkit's: :func:`mapped` around every call into
the channel bridge (:mod:`.channel`), and :func:`unreachable` for a connection that cannot open.

The bridge already turns pika's exceptions into three of its own (a closed channel with its AMQP
reply code, a returned and a refused publish). Conditions a caller expects (a 404 on a passive
declare, a 406 on a re-declare, a channel lost mid-publish that it sends again) are caught inside
the ``with`` block by the caller; whatever else leaves as ``BrokerError``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pika.exceptions
from pika.adapters.utils.connection_workflow import AMQPConnectorException  # TLS handshake failures

from orquestrador.brokers.rabbitmq.channel import ChannelClosed, Nacked, Returned, short_reason
from orquestrador.brokers.tls import tls_failure
from orquestrador.errors import BrokerError, BrokerUnavailable

# What opening a connection can raise (a refused socket, a login, a TLS handshake, a timeout).
CONNECT_ERRORS = (pika.exceptions.AMQPError, AMQPConnectorException, OSError, TimeoutError)
_LOGIN_REFUSED = (pika.exceptions.ProbableAuthenticationError, pika.exceptions.ProbableAccessDeniedError)


@contextlib.contextmanager
def mapped(what: str) -> Iterator[None]:
    """The bridge's exceptions inside become BrokerError(``what``: reason), the cause kept."""
    try:
        yield
    except ChannelClosed as exc:
        raise BrokerError(f"{what}: {exc}") from exc
    except Returned as exc:
        raise BrokerError(f"{what}: the queue does not exist") from exc
    except Nacked as exc:
        raise BrokerError(f"{what}: RabbitMQ did not take the message (nack)") from exc


def unreachable(exc: BaseException, where: str) -> BrokerUnavailable:
    """One line for a connection that could not open (``where``: the redacted URL)."""
    reason = "timed out" if isinstance(exc, TimeoutError) else short_reason(exc)
    if isinstance(exc, _LOGIN_REFUSED):
        return BrokerUnavailable(f"RabbitMQ at {where} {reason}")
    if (refused := tls_failure(exc)) is not None:
        return BrokerUnavailable(f"cannot connect to RabbitMQ at {where}: {refused}")
    return BrokerUnavailable(f"cannot reach RabbitMQ at {where}: {reason}; is the server running?")
