"""Where configuration comes from: arguments first, then ``ORQ_*`` environment variables.

Read in one place so a typo in a variable name is easy to spot and secrets are redacted the
same way everywhere.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import os
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from orquestrador.errors import ConfigError

ENV_BROKER_URL = "ORQ_BROKER_URL"
ENV_HOME = "ORQ_HOME"
STORE_FILE = "orquestrador.db"
ENV_RESULTS_QUEUE = "ORQ_RESULTS_QUEUE"

# Which of the toolkit's own topics a worker publishes (README, "The toolkit's own topics").
ENV_TOPICS = "ORQ_TOPICS"
TOPICS_CHOICES = ("on", "results", "off")

ENV_TLS_CA = "ORQ_TLS_CA"
ENV_TLS_CERT = "ORQ_TLS_CERT"
ENV_TLS_KEY = "ORQ_TLS_KEY"

_SECRET_PARAM = re.compile(r"pass|token|secret", re.IGNORECASE)

# What a payload may ask of a worker: ceilings and reach, set by whoever runs the worker (each is
# also an `orq worker` option). Read by the built-in plugins on every job, so a test or an
# embedding process can change them with the environment.
ENV_FETCH_DENY = "ORQ_FETCH_DENY"
ENV_FETCH_MAX_BYTES = "ORQ_FETCH_MAX_BYTES"
ENV_FETCH_MAX_TIMEOUT = "ORQ_FETCH_MAX_TIMEOUT"
ENV_COMANDO_MAX_BYTES = "ORQ_COMANDO_MAX_BYTES"
ENV_COMANDO_MAX_TIMEOUT = "ORQ_COMANDO_MAX_TIMEOUT"
ENV_DATASET_ROOTS = "ORQ_DATASET_ROOTS"
# How the escavadores present themselves and whom they spare: robots.txt is obeyed for the user
# agent below, except on the hosts listed in ORQ_ROBOTS_IGNORE (sites the operator owns).
ENV_USER_AGENT = "ORQ_USER_AGENT"
ENV_ROBOTS_IGNORE = "ORQ_ROBOTS_IGNORE"
DEFAULT_USER_AGENT = "orquestrador-escavador/0.1 (+https://pypi.org/project/orquestrador/)"

DEFAULT_FETCH_DENY = "link-local"
# Names ORQ_FETCH_DENY takes besides CIDRs. "loopback" holds the unspecified addresses too: on
# Linux a connection to 0.0.0.0 reaches the local machine.
FETCH_DENY_GROUPS: dict[str, tuple[str, ...]] = {
    "link-local": ("169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128"),  # cloud metadata lives here
    "loopback": ("127.0.0.0/8", "::1/128", "0.0.0.0/8", "::/128"),
    "private": ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7"),
}
FETCH_DENY_GROUPS["local"] = (
    FETCH_DENY_GROUPS["link-local"] + FETCH_DENY_GROUPS["loopback"] + FETCH_DENY_GROUPS["private"]
)
DEFAULT_FETCH_MAX_BYTES = 50 * 1024 * 1024
DEFAULT_FETCH_MAX_TIMEOUT = 120.0
DEFAULT_COMANDO_MAX_BYTES = 1024 * 1024
DEFAULT_COMANDO_MAX_TIMEOUT = 3600.0
CEILINGS: dict[str, float] = {
    ENV_FETCH_MAX_BYTES: DEFAULT_FETCH_MAX_BYTES,
    ENV_FETCH_MAX_TIMEOUT: DEFAULT_FETCH_MAX_TIMEOUT,
    ENV_COMANDO_MAX_BYTES: DEFAULT_COMANDO_MAX_BYTES,
    ENV_COMANDO_MAX_TIMEOUT: DEFAULT_COMANDO_MAX_TIMEOUT,
}

TLS_SCHEMES = ("tls", "rediss", "amqps", "bullmqs", "kafkas")


def home() -> Path:
    """The state directory: embedded broker data, its state file and the SQLite store."""
    return Path(os.environ.get(ENV_HOME) or ".orquestrador").absolute()


def store_path(state_dir: Path | None = None) -> Path:
    """The SQLite store of a state directory (default: :func:`home`)."""
    return (state_dir or home()) / STORE_FILE


def broker_url(url: str | None = None) -> str | None:
    """The configured broker URL, or ``None`` for the embedded default."""
    chosen = url or os.environ.get(ENV_BROKER_URL) or None
    if chosen is not None:
        check_url(chosen)
    return chosen


def results_queue(name: str | None = None) -> str | None:
    return name or os.environ.get(ENV_RESULTS_QUEUE) or None


def toolkit_topics() -> tuple[bool, bool]:
    """(result topics, lifecycle event topics) a worker publishes, from ``ORQ_TOPICS``: ``on``
    (default, both), ``results`` or ``off``; another value is a :class:`ConfigError`."""
    value = os.environ.get(ENV_TOPICS, "").strip().lower() or "on"
    if value not in TOPICS_CHOICES:
        raise ConfigError(f"{ENV_TOPICS}={value!r}: use one of {', '.join(TOPICS_CHOICES)}")
    return value != "off", value == "on"


def ceiling(env: str, default: float) -> float:
    """A worker-side ceiling on what a payload may ask for: ``$env`` if set, else ``default``.

    A bad value is the operator's to fix, so it is a ``ConfigError`` (the job is retried, by a
    worker that may be configured right), never silently the default.
    """
    raw = os.environ.get(env, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{env}={raw!r} must be a number above 0 (unset, the default is {default:.10g})")
    return value


def fetch_deny() -> str:
    """``ORQ_FETCH_DENY`` as set (read on every call), else the default ``link-local``."""
    return os.environ.get(ENV_FETCH_DENY, "").strip() or DEFAULT_FETCH_DENY


def user_agent() -> str:
    """``ORQ_USER_AGENT`` (read on every call), else the toolkit's own; robots.txt is read for it."""
    value = os.environ.get(ENV_USER_AGENT, "").strip() or DEFAULT_USER_AGENT
    if not re.fullmatch(r"[\x20-\x7e]+", value):
        raise ConfigError(f"{ENV_USER_AGENT} must be printable ASCII on one line")
    return value


def robots_ignore() -> tuple[str, ...]:
    """Hosts whose robots.txt the escavadores do not read (``ORQ_ROBOTS_IGNORE``, read on every call).

    Comma-separated host names or addresses; ``.example.com`` also covers its subdomains and
    ``*`` every host. Empty (the default): robots.txt is obeyed everywhere.
    """
    return _robots_ignore(os.environ.get(ENV_ROBOTS_IGNORE, ""))


@functools.lru_cache(maxsize=16)
def _robots_ignore(text: str) -> tuple[str, ...]:
    hosts = tuple(h.strip().lower().strip("[]") for h in text.split(",") if h.strip())
    for host in hosts:
        if host != "*" and not re.fullmatch(r"\.?[a-z0-9._:-]+", host):
            raise ConfigError(
                f"{ENV_ROBOTS_IGNORE}: {host[:80]!r} is not a host name (example.com, .example.com, "
                "127.0.0.1) nor *"
            )
    return hosts


@functools.lru_cache(maxsize=16)
def deny_networks(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """The networks a comma-separated list of CIDRs and group names stands for (``none``: none)."""
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for entry in (e.strip() for e in text.split(",")):
        if not entry or entry == "none":
            continue
        try:
            networks.extend(ipaddress.ip_network(c) for c in FETCH_DENY_GROUPS.get(entry, (entry,)))
        except ValueError:
            raise ConfigError(
                f"{ENV_FETCH_DENY}: {entry!r} is neither a network (10.0.0.0/8, ::1) nor one of "
                f"{', '.join(FETCH_DENY_GROUPS)}, none"
            ) from None
    return tuple(networks)


def finito(value: object) -> float | None:
    """A JSON number as a finite float, else None (booleans, text, NaN, ±inf, 10**400 included).

    For payload options: ``float()`` of a huge JSON integer raises ``OverflowError``, and a NaN
    passes every comparison, so both would otherwise slip past a bound or fail as a retry.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def check_url(url: str) -> str:
    """Refuse a URL we cannot use, saying what would work."""
    try:
        parts = urlsplit(url)
        for seed in seeds(parts.netloc):  # a cluster's servers: nats://h1:4222,h2:4222
            urlsplit(f"//{seed}").port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ConfigError(f"invalid broker URL {redact_url(url)!r}: {exc}") from None
    from orquestrador.brokers.registry import adapter_for, known_schemes  # registered adapters

    if parts.scheme not in known_schemes():
        raise ConfigError(
            f"unsupported broker URL {redact_url(url)!r}: use one of "
            + ", ".join(f"{s}://" for s in known_schemes())
            + f" (or leave {ENV_BROKER_URL} unset for the embedded NATS server; a package that"
            " provides another broker registers its scheme when installed)"
        )
    adapter = adapter_for(parts.scheme)
    if adapter.capabilities.cross_process and adapter.host_required and not any(
        urlsplit(f"//{seed}").hostname for seed in seeds(parts.netloc)
    ):
        raise ConfigError(f"broker URL {redact_url(url)!r} has no host, e.g. nats://127.0.0.1:4222")
    return url


def seeds(netloc: str) -> list[str]:
    """The ``host:port`` entries of a netloc that lists several servers (credentials dropped)."""
    return [h.strip() for h in netloc.rpartition("@")[2].split(",") if h.strip()]


def server_urls(url: str) -> list[str]:
    """``scheme://user:pass@h1:p1,h2:p2/path?q`` as one URL per server (drivers take a list).

    The credentials, path and query go with every server; a cluster's servers usually announce
    or accept the others once one of them answers, so any one of them is a good first contact.
    """
    parts = urlsplit(url)
    userinfo, at, _ = parts.netloc.rpartition("@")
    hosts = seeds(parts.netloc)
    return [urlunsplit(parts._replace(netloc=f"{userinfo}{at}{host}")) for host in hosts] or [url]


def redact_url(url: str) -> str:
    """The URL with any password or token replaced by ``***``, safe for logs and errors.

    Covers ``user:password@``, a lone token (``nats://token@host``) and query parameters whose
    name says they hold a secret (``?password=``, ``?token=``).
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_SECRET_PARAM.search(k) for k, _ in pairs):
            query = urlencode([(k, "***" if _SECRET_PARAM.search(k) else v) for k, v in pairs], safe="*/")
    if not parts.username and not parts.password:
        return url if query == parts.query else urlunsplit(parts._replace(query=query))
    if "," in parts.netloc:  # several servers share the credentials: nats://u:pw@h1:1,h2:2
        user = parts.username or ""
        secret = f"{user}:***" if parts.password else "***"
        netloc = f"{secret}@{','.join(seeds(parts.netloc))}"
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    user = parts.username or ""
    hosts = parts.netloc.rpartition("@")[2]  # as written: one host:port, or a list (Kafka)
    netloc = f"{user}:***@{hosts}" if parts.password else f"***@{hosts}"
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


@dataclass(frozen=True)
class TlsPaths:
    """PEM files for a TLS broker connection; ``settings`` names where each came from, for errors.

    ``ca`` None means the system's trusted CAs; ``cert``/``key`` are the client certificate,
    only needed when the server asks for one (the key may sit in the ``cert`` file).
    """

    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    settings: dict[str, str] = field(default_factory=dict)


_TLS_PARAMS = {
    "ca": ("tls_ca", ENV_TLS_CA),
    "cert": ("tls_cert", ENV_TLS_CERT),
    "key": ("tls_key", ENV_TLS_KEY),
}


def split_tls(url: str) -> tuple[str, TlsPaths | None]:
    """The URL without ``tls_ca``/``tls_cert``/``tls_key`` query parameters, and the TLS files.

    URL parameters win over ``ORQ_TLS_*``; both are only used by TLS schemes (``tls://``,
    ``rediss://``, ``amqps://``), which always get a ``TlsPaths`` (plain ones get None), so
    one environment can serve plain and TLS brokers alike.
    """
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    names = {param for param, _ in _TLS_PARAMS.values()}
    given = {k: v for k, v in query if k in names}
    clean = urlunsplit(parts._replace(query=urlencode([(k, v) for k, v in query if k not in names])))
    if parts.scheme not in TLS_SCHEMES:
        if given:
            raise ConfigError(
                f"{', '.join(sorted(given))} in broker URL {redact_url(url)!r} need a TLS scheme: "
                "use " + ", ".join(f"{s}://" for s in TLS_SCHEMES)
            )
        return clean, None
    values: dict[str, str | None] = {}
    origins: dict[str, str] = {}
    for attr, (param, env) in _TLS_PARAMS.items():
        if given.get(param):
            values[attr], origins[attr] = given[param], f"{param} in the broker URL"
        else:
            values[attr], origins[attr] = os.environ.get(env) or None, env
    return clean, TlsPaths(values["ca"], values["cert"], values["key"], origins)


def pop_url_options(url: str, names: Collection[str]) -> tuple[str, dict[str, str]]:
    """The URL without the adapter's own query parameters ``names``, and their values: drivers
    get only what they understand (``?replicas=3`` is the toolkit's, not nats-py's)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    options = {k: v for k, v in query if k in names}
    clean = urlunsplit(parts._replace(query=urlencode([(k, v) for k, v in query if k not in names])))
    return clean, options


def int_option(url: str, name: str, value: str | None, default: int, low: int, high: int) -> int:
    """``?name=value`` of a broker URL as an int in ``[low, high]``; a ConfigError says what to fix."""
    if value is None:
        return default
    if not value.strip().isdigit() or not low <= int(value) <= high:
        raise ConfigError(
            f"?{name}={value[:20]!r} in broker URL {redact_url(url)!r} must be a whole number "
            f"from {low} to {high} (default {default})"
        )
    return int(value)


_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$", re.IGNORECASE)


def parse_duration(value: float | str, setting: str) -> float:
    """Seconds from ``3600``, ``90s``, ``15m``, ``12h``, ``7d`` or ``2w``; ``setting`` names the source."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if match is None:
            raise ConfigError(
                f"{setting}={value!r} is not a duration: use seconds or a number with s, m, h, d or w "
                "(e.g. 3600, 12h, 7d)"
            )
        seconds = float(match[1]) * _DURATION_UNITS[match[2].lower()]
    if seconds <= 0:
        raise ConfigError(f"{setting}={value!r} must be a positive duration (e.g. 12h, 7d)")
    return seconds


def parse_count(value: int | str, setting: str) -> int:
    """A positive whole number; ``setting`` names where it came from, for the error."""
    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit() or int(text) <= 0:
        raise ConfigError(f"{setting}={value!r} must be a positive whole number (e.g. 100000)")
    return int(text)
