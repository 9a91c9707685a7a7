"""Every error the toolkit raises, in one tree.

::

    OrquestradorError
    ├── ConfigError                 bad URL, option or setting: fix the configuration
    │   └── ScheduleError           a bad schedule (cron, interval, zone) or an unknown one
    ├── EnvelopeError               bytes that are not a valid v1 envelope (carries the reason)
    │   └── PayloadTooLarge         an envelope over the size limit, refused before publishing
    ├── BrokerError                 the broker failed or refused something
    │   ├── BrokerUnavailable       cannot reach the broker at all
    │   ├── EmbeddedServerError     the embedded nats-server could not start or be found
    │   └── TopicError              a bad topic name or pattern, or a body that is no topic message
    ├── PluginError                 a plugin is missing, registered twice or badly declared
    ├── StoreError                  the local store could not be read or written
    ├── LaunchError                 a batch launch stopped part-way (carries the Lote so far)
    ├── JobTimeout                  Job.wait() or solicitar() ran out of time (the job may still finish)
    ├── JobFailed                   solicitar(): the job finished without a result (carries the erro)
    ├── ClosedError                 the Orquestrador was closed: create a new one
    └── HandlerSignal               control flow raised by handlers, never an error to report
        ├── Retry                   try again later, optionally after `delay` seconds
        └── PermanentFailure        do not retry: dead-letter now
            ├── WorkerLost          every attempt died with its worker
            └── JobExpired          not started by its expira_em: never run

Adapters translate driver exceptions at their boundary (``raise BrokerError(...) from exc``),
so users catch one family whatever broker they run on. Messages say what happened and what to
do, and never contain a password or token (see :func:`orquestrador.settings.redact_url`).
"""

from __future__ import annotations

from typing import Any


class OrquestradorError(Exception):
    """Base of every error raised by orquestrador."""


class ConfigError(OrquestradorError, ValueError):
    """A URL, option or setting is invalid; the message says which and how to fix it."""


class ScheduleError(ConfigError):
    """A schedule cannot be made as given (bad cron, interval or zone), or no schedule has that id."""


class EnvelopeError(OrquestradorError, ValueError):
    """Bytes that cannot be read as a v1 envelope; ``reason`` is what goes to the dead letter."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PayloadTooLarge(EnvelopeError):
    """An envelope bigger than the configured limit; refused before it reaches the broker."""


class BrokerError(OrquestradorError):
    """The broker failed or refused an operation."""


class BrokerUnavailable(BrokerError):
    """The broker cannot be reached; check the URL and that the server runs."""


class EmbeddedServerError(BrokerError):
    """The embedded nats-server could not be started, found or attached to."""


class TopicError(BrokerError, ValueError):
    """A topic or pattern that is not valid, a body that is not a topic message, or a topic
    feature (e.g. durable subscriptions) this broker does not offer."""


class PluginError(OrquestradorError):
    """A plugin is unknown, registered twice, or declared with bad options."""


class StoreError(OrquestradorError):
    """The local store (SQLite under ``ORQ_HOME``) could not be read or written."""


class LaunchError(OrquestradorError):
    """A batch launch stopped part-way; nothing already sent is lost.

    ``lote`` is the batch as far as it got (a :class:`~orquestrador.facade.Lote` from the
    facade, its id from :class:`~orquestrador.orchestrator.AsyncOrquestrador`): every job in it
    is recorded, so ``orq.lote(id)`` finds it after a restart too. ``enviados`` is how many jobs
    the broker confirmed; the others in the batch may or may not have reached it. The cause is
    ``__cause__``.
    """

    def __init__(self, message: str, *, lote: Any, enviados: int) -> None:
        super().__init__(message)
        self.lote = lote
        self.enviados = enviados


class JobTimeout(OrquestradorError, TimeoutError):
    """``Job.wait`` or ``solicitar`` gave up; the job itself is not cancelled and may still finish.

    ``message_id`` (when known) finds the job again: ``orq.job(message_id)``.
    """

    def __init__(self, message: str, *, message_id: str | None = None) -> None:
        super().__init__(message)
        self.message_id = message_id


class JobFailed(OrquestradorError):
    """``solicitar`` saw its job finish without a result (``erro`` or dead-lettered).

    ``erro`` is the worker's error (``tipo``, ``mensagem``, …), ``estado`` the job's final state
    and ``message_id`` the job, still recorded in the store.
    """

    def __init__(self, message: str, *, message_id: str, estado: str, erro: dict[str, Any] | None) -> None:
        super().__init__(message)
        self.message_id = message_id
        self.estado = estado
        self.erro = erro


class ClosedError(OrquestradorError, RuntimeError):
    """A closed ``Orquestrador`` was asked to do something; its store stays readable."""

    def __init__(self, message: str = "this Orquestrador is closed: create a new one") -> None:
        super().__init__(message)


class HandlerSignal(Exception):
    """Raised by a handler to steer delivery; not reported as a failure of the toolkit."""


class Retry(HandlerSignal):
    """Ask for another attempt later, e.g. when a site says 429.

    ``delay`` (seconds) overrides the exponential backoff for this attempt.
    """

    def __init__(self, message: str = "retry requested", *, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class PermanentFailure(HandlerSignal):
    """The job can never succeed (bad input, forbidden program): dead-letter it without retries."""


class WorkerLost(PermanentFailure):
    """Every attempt so far died with its worker (a crash, the OOM killer): stop re-running the job."""


class JobExpired(PermanentFailure):
    """The job reached a worker after its ``expira_em``: it is answered with erro, never run."""


__all__ = [
    "BrokerError",
    "BrokerUnavailable",
    "ClosedError",
    "ConfigError",
    "EmbeddedServerError",
    "EnvelopeError",
    "HandlerSignal",
    "JobExpired",
    "JobFailed",
    "JobTimeout",
    "LaunchError",
    "OrquestradorError",
    "PayloadTooLarge",
    "PermanentFailure",
    "PluginError",
    "Retry",
    "ScheduleError",
    "StoreError",
    "TopicError",
    "WorkerLost",
]
