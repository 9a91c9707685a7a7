"""HTTP plumbing the built-in escavadores share, so they pool connections and fail the same way.

One pooled client per event loop; URL and option checks that turn bad input into
``PermanentFailure`` (retrying cannot fix a payload); Retry-After parsing; and :func:`buscar`, a
bounded GET for documents that are only useful whole (a JSON page, a sitemap, a feed).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from orquestrador import PermanentFailure, Retry

USER_AGENT = "orquestrador-escavador/0.1 (+https://pypi.org/project/orquestrador/)"
DEFAULT_TIMEOUT = 20.0
MAX_RETRY_AFTER = 3600.0

_clients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}


def client() -> httpx.AsyncClient:
    """The running loop's pooled client: connection reuse across jobs, never across loops."""
    loop = asyncio.get_running_loop()
    pooled = _clients.get(loop)
    if pooled is None or pooled.is_closed:
        pooled = httpx.AsyncClient(
            follow_redirects=True,
            headers={"User-Agent": USER_AGENT},
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
        )
        _clients[loop] = pooled
    return pooled


def check_url(url: object, campo: str = "url") -> str:
    """An absolute http(s) URL, or PermanentFailure: no retry makes a bad URL good."""
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
        raise PermanentFailure(f"payload needs {campo!r} with an http(s) URL, got {url!r}")
    if not urlsplit(url).hostname:
        raise PermanentFailure(f"URL {url!r} has no host")
    return url


def http_url(value: object, base: str) -> str | None:
    """``value`` made absolute against ``base`` if it is an http(s) URL with a host, else None.

    For URLs found in documents (links, sitemap locations), where one bad entry is skipped
    rather than failing the job.
    """
    if not isinstance(value, str) or not value.strip():
        return None
    absolute = urljoin(base, value.strip())
    parts = urlsplit(absolute)
    return absolute if parts.scheme in ("http", "https") and parts.hostname else None


def mesma_origem(a: str, b: str) -> bool:
    """Same scheme, host and port: only then may a followed link get the payload's headers."""
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.scheme, pa.hostname, pa.port) == (pb.scheme, pb.hostname, pb.port)


def retry_after(resp: httpx.Response) -> float | None:
    """Seconds the server asked us to wait (delta-seconds or HTTP-date), capped at an hour."""
    value = resp.headers.get("retry-after", "").strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    if value:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is not None:
            return min(max(0.0, when.timestamp() - time.time()), MAX_RETRY_AFTER)
    return None


def numero(payload: dict[str, Any], chave: str, padrao: float, *, minimo: float = 0.0) -> float:
    """A numeric payload option, checked once here so a typo dead-letters instead of retrying."""
    value = payload.get(chave, padrao)
    if value is None:
        return padrao
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= minimo:
        raise PermanentFailure(f"payload option {chave!r} must be a number above {minimo:g}, got {value!r}")
    return float(value)


def inteiro(payload: dict[str, Any], chave: str, padrao: int, *, minimo: int = 1) -> int:
    """A whole-number payload option (a bound such as ``max_pages``), at least ``minimo``."""
    value = payload.get(chave, padrao)
    if value is None:
        return padrao
    if isinstance(value, bool) or not isinstance(value, int) or value < minimo:
        raise PermanentFailure(f"payload option {chave!r} must be a whole number >= {minimo}, got {value!r}")
    return value


def texto_dict(payload: dict[str, Any], chave: str) -> dict[str, str]:
    """A ``{name: value}`` option such as ``headers`` or ``params``; scalars become strings."""
    value = payload.get(chave)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise PermanentFailure(
            f"payload option {chave!r} must be an object of names to strings, got {value!r}"
        )
    out: dict[str, str] = {}
    for key, item in value.items():
        if isinstance(item, bool):
            out[key] = "true" if item else "false"
        elif isinstance(item, str | int | float):
            out[key] = str(item)
        else:
            raise PermanentFailure(f"payload option {chave}[{key!r}] must be text or a number, got {item!r}")
    return out


class HTTPStatusFailure(PermanentFailure):
    """A 4xx answer other than 408/429; ``status`` lets a caller treat some of them as an end."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Resposta:
    """A whole, successful answer: final URL after redirects, headers, Link relations and body."""

    status: int
    url: str
    headers: httpx.Headers
    links: dict[str, str]
    body: bytes


async def buscar(
    url: str,
    *,
    timeout: float,
    max_bytes: int,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> Resposta:
    """GET ``url`` for a document that is useless when cut short, and classify failures.

    429, 408 and 5xx raise ``Retry`` (honouring Retry-After): the server may answer later. Any
    other 4xx is ``PermanentFailure`` naming the status: asking again gets the same answer. A
    body over ``max_bytes`` is ``PermanentFailure`` too, because half a JSON page or XML
    document cannot be parsed. Timeouts and connection errors propagate as httpx exceptions,
    which the runtime retries with backoff. ``params`` are merged into the query of ``url``.
    """
    if params:  # merged into the URL's own query: httpx's params= would replace it
        url = str(httpx.URL(url).copy_merge_params(params))
    async with client().stream("GET", url, headers=headers, timeout=timeout) as resp:
        status = resp.status_code
        if status in (408, 429) or status >= 500:
            raise Retry(f"{resp.url} answered {status}", delay=retry_after(resp))
        if status >= 400:
            raise HTTPStatusFailure(f"{resp.url} answered {status} {resp.reason_phrase}".rstrip(), status)
        body = bytearray()
        async for chunk in resp.aiter_bytes():
            body += chunk
            if len(body) > max_bytes:
                raise PermanentFailure(
                    f"{resp.url} is larger than max_bytes={max_bytes}; raise max_bytes to fetch it"
                )
        final = str(resp.url)
        links = {rel: urljoin(final, link["url"]) for rel, link in resp.links.items() if link.get("url")}
        return Resposta(status, final, resp.headers, links, bytes(body))
