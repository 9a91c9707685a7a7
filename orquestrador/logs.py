"""Log lines of the runtime: every line of a job names its correlation_id and message_id.

A worker sets :data:`job_fields` while it handles a delivery (asyncio tasks and the handler's
thread inherit it), so lines logged by the handler's own loggers and by libraries it calls carry
the job's ids too, not only ``ctx.log``. ``text`` puts them at the end of the line; ``json``
writes one object per line for log shippers. Broker URLs with a password are redacted in every
line, whoever logged them.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import sys
import time
from typing import IO, Any, Literal, cast

LogFormat = Literal["text", "json"]
FORMATS: tuple[str, ...] = ("text", "json")
ENV_LOG_FORMAT = "ORQ_LOG_FORMAT"
ENV_LOG_LEVEL = "ORQ_LOG_LEVEL"

# The fields a job's lines carry, in the order the text format shows them.
FIELDS = ("correlation_id", "message_id", "alvo", "tentativa", "worker")

job_fields: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "orq_job_fields", default=None
)

# user:password@ in any URL-like text (amqp://guest:secret@host, redis://:token@host).
_SECRET_IN_URL = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^\s:/@]*):[^\s@/]+@", re.IGNORECASE)


def redact(text: str) -> str:
    """Hide passwords of URLs anywhere in a log line (a library may log the URL it was given)."""
    return _SECRET_IN_URL.sub(r"\1:***@", text) if "@" in text else text


class _JobFields(logging.Filter):
    """Copies the current job's fields onto records that do not already carry them."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = job_fields.get()
        if fields:
            for key, value in fields.items():
                if getattr(record, key, None) is None:
                    setattr(record, key, value)
        return True


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message [correlation_id=… message_id=…]``, for people."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = " ".join(
            f"{key}={value}" for key in FIELDS[:4] if (value := getattr(record, key, None)) is not None
        )
        if ids:
            head, sep, tail = line.partition("\n")  # keep a traceback below the ids
            line = f"{head} [{ids}]{sep}{tail}"
        return redact(line)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``message`` and the job fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for key in FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                out[key] = value
        if record.exc_info:
            out["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(out, ensure_ascii=False, default=str)


def make_handler(stream: IO[str], fmt: LogFormat = "text") -> logging.Handler:
    """A handler writing ``fmt`` lines that carry the current job's fields."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_JobFields())
    return handler


def setup(level: str | None = None, fmt: str | None = None) -> LogFormat:
    """Configure the root logger of a CLI process (worker, supervisor, pipeline runner).

    ``None`` falls back to ``ORQ_LOG_LEVEL`` / ``ORQ_LOG_FORMAT``, then INFO / text. Returns the
    format chosen.
    """
    from orquestrador.errors import ConfigError

    fmt = (fmt or os.environ.get(ENV_LOG_FORMAT) or "text").lower()
    if fmt not in FORMATS:
        raise ConfigError(f"log format {fmt!r} is not text or json (--log-format, {ENV_LOG_FORMAT})")
    level = (level or os.environ.get(ENV_LOG_LEVEL) or "INFO").upper()
    if not isinstance(logging.getLevelName(level), int):
        raise ConfigError(f"log level {level!r} is not DEBUG, INFO, WARNING, ERROR or CRITICAL")
    handler = make_handler(sys.stderr, cast(LogFormat, fmt))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("nats").setLevel(max(logging.WARNING, root.level))
    return cast(LogFormat, fmt)
