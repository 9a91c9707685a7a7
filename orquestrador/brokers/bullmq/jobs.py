"""How a message is a BullMQ job: its data, name and headers, read back like any broker field.

A body that is JSON (every envelope) is the job's ``data`` verbatim, so Node's ``job.data`` is
the envelope object and the bytes come back exactly as published. Any other body (the broker
moves opaque bytes) is wrapped as ``{"orq_bytes": base64}``. Headers ride in the job's options
(``opts.orq_headers``), which BullMQ keeps and Node ignores; the reason a job was dead-lettered
is BullMQ's own ``failedReason``, and our other dead-letter headers sit in the job hash field
``orq_dl``. A job written by anyone else (a Node producer, a hand-made HSET) is read like a body:
what cannot be read becomes ``Delivery.problem``.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Any

from orquestrador.brokers.intake import FieldReader
from orquestrador.brokers.queues import DLQ_ATTEMPTS, DLQ_ERROR_TYPE, DLQ_REASON

RAW_KEY = "orq_bytes"
HEADERS_OPT = "orq_headers"
DEAD_LETTER_FIELD = "orq_dl"
DEFAULT_NAME = "orq"


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # NaN/Infinity: Node's JSON.parse would refuse them


def job_data(body: bytes) -> tuple[str, str, dict[str, Any]]:
    """The job's ``data`` field for ``body`` (the JSON itself, or the bytes wrapped), its name
    (the envelope's ``tipo_evento``, else ``orq``) and the JSON object, if it is one (one parse
    for all three)."""
    try:
        text = body.decode("utf-8")
        value = json.loads(text, parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return json.dumps({RAW_KEY: base64.b64encode(body).decode("ascii")}), DEFAULT_NAME, {}
    if text.startswith('{"' + RAW_KEY + '"'):  # a body that looks like our wrapper is wrapped too
        return json.dumps({RAW_KEY: base64.b64encode(body).decode("ascii")}), DEFAULT_NAME, {}
    if not isinstance(value, dict):
        return text, DEFAULT_NAME, {}
    name = value.get("tipo_evento")
    if not (isinstance(name, str) and 0 < len(name) <= 64 and name.isidentifier()):
        name = DEFAULT_NAME
    return text, name, value


# BullMQ runs jobs without a priority before every prioritized one, and a lower number first:
# so every job of ours is prioritized, prioridade 9 as BullMQ's 1 and the default 0 as its 10.
LOWEST_PRIORITY = 10


def timing_opts(envelope: dict[str, Any], now_ms: int) -> dict[str, int]:
    """BullMQ's own ``priority`` and ``delay`` for a job envelope's ``prioridade`` and
    ``executar_em``. A value that is not what the envelope allows is left to the worker, which
    dead-letters the job with the reason."""
    prioridade = envelope.get("prioridade", 0)
    ok = isinstance(prioridade, int) and not isinstance(prioridade, bool) and 0 <= prioridade <= 9
    opts = {"priority": LOWEST_PRIORITY - (prioridade if ok else 0)}
    start = envelope.get("executar_em")
    if isinstance(start, str):
        try:
            moment = datetime.fromisoformat(start)
        except ValueError:
            return opts
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        delay = round(moment.timestamp() * 1000) - now_ms
        if delay > 0:
            opts["delay"] = delay
    return opts


def body_of(data: Any) -> bytes:
    """The body a job's ``data`` field stands for (see :func:`job_data`)."""
    if not isinstance(data, str):
        return b""
    if data.startswith('{"' + RAW_KEY + '"'):
        try:
            wrapped = json.loads(data)
            return base64.b64decode(wrapped[RAW_KEY], validate=True)
        except (ValueError, KeyError, TypeError, binascii.Error):
            pass
    return data.encode("utf-8", "surrogatepass")


def _json_object(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, str) or not raw or len(raw) > 1_000_000:
        return {}
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def job_headers(raw: dict[str, Any], reader: FieldReader) -> dict[str, str]:
    """The headers published with a job (from its opts), read like a body."""
    opts = raw.get("opts")
    if opts is not None and not isinstance(opts, str):
        reader.problems.append("opts field is not text")
        return {}
    headers = _json_object(opts).get(HEADERS_OPT)
    if headers is None:
        return {}
    if not isinstance(headers, dict):
        reader.problems.append(f"opts.{HEADERS_OPT} is not an object")
        return {}
    return reader.headers(headers.items(), f"opts.{HEADERS_OPT}")


def dead_letter_headers_of(raw: dict[str, Any], reader: FieldReader) -> dict[str, str]:
    """A failed job's dead-letter headers: ours if we failed it, else from BullMQ's own fields."""
    ours = _json_object(raw.get(DEAD_LETTER_FIELD))
    if ours:
        return reader.headers(ours.items(), DEAD_LETTER_FIELD)
    reason = raw.get("failedReason")
    attempts = raw.get("atm") or raw.get("attemptsMade") or "0"
    fields = {
        DLQ_REASON: reason if isinstance(reason, str) else "",
        DLQ_ERROR_TYPE: "Error",
        DLQ_ATTEMPTS: attempts,
    }
    return reader.headers(fields.items(), "failed job")
