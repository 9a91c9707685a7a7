"""Where configuration comes from: arguments first, then ``ORQ_*`` environment variables.

Read in one place so a typo in a variable name is easy to spot and secrets are redacted the
same way everywhere.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from orquestrador.errors import ConfigError

ENV_BROKER_URL = "ORQ_BROKER_URL"
ENV_HOME = "ORQ_HOME"
ENV_RESULTS_QUEUE = "ORQ_RESULTS_QUEUE"

SCHEMES = ("memory", "nats", "tls", "redis", "rediss", "amqp", "amqps")


def home() -> Path:
    """The state directory: embedded broker data, its state file and the SQLite store."""
    return Path(os.environ.get(ENV_HOME) or ".orquestrador").absolute()


def broker_url(url: str | None = None) -> str | None:
    """The configured broker URL, or ``None`` for the embedded default."""
    chosen = url or os.environ.get(ENV_BROKER_URL) or None
    if chosen is not None:
        check_url(chosen)
    return chosen


def results_queue(name: str | None = None) -> str | None:
    return name or os.environ.get(ENV_RESULTS_QUEUE) or None


def check_url(url: str) -> str:
    """Refuse a URL we cannot use, saying what would work."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ConfigError(f"invalid broker URL {redact_url(url)!r}: {exc}") from None
    if parts.scheme not in SCHEMES:
        raise ConfigError(
            f"unsupported broker URL {redact_url(url)!r}: use one of "
            + ", ".join(f"{s}://" for s in SCHEMES)
            + f" (or leave {ENV_BROKER_URL} unset for the embedded NATS server)"
        )
    if parts.scheme != "memory" and not parts.hostname:
        raise ConfigError(f"broker URL {redact_url(url)!r} has no host, e.g. nats://127.0.0.1:4222")
    return url


def redact_url(url: str) -> str:
    """The URL with any password or token replaced by ``***``, safe for logs and errors."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if not parts.username and not parts.password:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{user}:***@{host}" if parts.password else f"***@{host}"
    if port is not None:
        netloc += f":{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
