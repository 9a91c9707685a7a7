"""Queue names and dead letters: the rules every adapter and the runtime share.

Names must be portable across NATS subjects, Redis keys and AMQP queues. Dead letters live in
``<queue>.dlq``; they carry the original body untouched, and the reason, the error type and the
attempt count travel in headers (``DLQ_*``), so a replay publishes exactly what was first sent.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from orquestrador.brokers.intake import MAX_HEADERS
from orquestrador.errors import ConfigError

DLQ_SUFFIX = ".dlq"
DLQ_REASON = "orq-dlq-reason"
DLQ_ERROR_TYPE = "orq-dlq-error-type"
DLQ_ATTEMPTS = "orq-dlq-attempts"
DLQ_QUEUE = "orq-dlq-queue"
DLQ_AT = "orq-dlq-at"
DLQ_LANE = "orq-dlq-lane"  # the priority lane it was taken from (support.lanes), where replay puts it back
DLQ_HEADERS = (DLQ_REASON, DLQ_ERROR_TYPE, DLQ_ATTEMPTS, DLQ_QUEUE, DLQ_AT, DLQ_LANE)

_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,200}(\.dlq)?$")

def validate_queue_name(name: str) -> str:
    """Queue names must be portable across NATS subjects, Redis keys and AMQP queues."""
    if not isinstance(name, str) or not _QUEUE_NAME.match(name) or name.endswith("__dlq"):
        raise ConfigError(
            f"invalid queue name {name!r}: use letters, digits, '_' or '-' (at most 200), "
            "optionally followed by '.dlq' (a name may not end in '__dlq')"
        )
    return name


JOB_QUEUE_PREFIXES = ("escavador_", "executor_")


def validate_results_queue(name: str) -> str:
    """A ``responder_para``: a valid queue name that is neither a job queue nor a dead-letter queue.

    Results sent to a job queue would be run as jobs (or dead-lettered there), and a name the
    broker refuses would fail every publish of the result: both are refused before any work.
    """
    shown = name[:80] if isinstance(name, str) else name
    try:
        validate_queue_name(name)
    except ConfigError:
        raise ConfigError(
            f"responder_para {shown!r} is not a valid queue name: use letters, digits, '_' or '-' "
            "(at most 200)"
        ) from None
    if name.endswith(DLQ_SUFFIX) or name.startswith(JOB_QUEUE_PREFIXES):
        raise ConfigError(
            f"responder_para {shown!r} is a job or dead-letter queue of the toolkit, not a results "
            "queue: pick another name (the default is orquestrador_resultados)"
        )
    return name


def dlq_of(queue: str) -> str:
    return queue if queue.endswith(DLQ_SUFFIX) else queue + DLQ_SUFFIX


def origin_of(dlq: str) -> str:
    return dlq[: -len(DLQ_SUFFIX)] if dlq.endswith(DLQ_SUFFIX) else dlq


def dead_letter_headers(
    headers: dict[str, str] | None, *, queue: str, reason: str, error_type: str, attempts: int
) -> dict[str, str]:
    kept = [(k, v) for k, v in (headers or {}).items() if k not in DLQ_HEADERS]
    # Room for ours within what a reader accepts (brokers.intake.MAX_HEADERS), so a dead letter
    # is never unreadable itself.
    out = dict(kept[: MAX_HEADERS - len(DLQ_HEADERS)])
    out.update(
        {
            DLQ_REASON: reason[:2000],
            DLQ_ERROR_TYPE: error_type,
            DLQ_ATTEMPTS: str(attempts),
            DLQ_QUEUE: queue,
            DLQ_AT: datetime.now(UTC).isoformat(),
        }
    )
    return out


def strip_dead_letter_headers(headers: dict[str, str] | None) -> dict[str, str]:
    return {k: v for k, v in (headers or {}).items() if k not in DLQ_HEADERS}
