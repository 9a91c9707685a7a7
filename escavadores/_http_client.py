"""HTTP plumbing the built-in escavadores share, so they pool connections and fail the same way.

One pooled client per event loop, dialling only what ``ORQ_FETCH_DENY`` allows; URL and option
checks that turn bad input into ``PermanentFailure`` (retrying cannot fix a payload), within the
worker's ceilings; Retry-After parsing; :func:`baixar`, a bounded GET within one deadline that
follows redirects itself, giving the payload's headers to its origin only; and :func:`buscar`,
the same for documents that are only useful whole (a JSON page, a sitemap, a feed).
"""

from __future__ import annotations

import asyncio
import http.cookiejar
import re
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from escavadores import _robots, _sessoes
from escavadores._rede import transporte
from orquestrador import PermanentFailure, Retry
from orquestrador.settings import (
    DEFAULT_FETCH_MAX_BYTES,
    DEFAULT_FETCH_MAX_TIMEOUT,
    ENV_FETCH_MAX_BYTES,
    ENV_FETCH_MAX_TIMEOUT,
    ceiling,
    finito,
    user_agent,
)

DEFAULT_TIMEOUT = 20.0
MAX_RETRY_AFTER = 3600.0
MAX_REDIRECTS = 10

_clients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}
_REDIRECTS = (301, 302, 303, 307, 308)
LOCATION = "x-orquestrador-location"
_HOST = re.compile(r"^[A-Za-z0-9._-]+$")  # a DNS name (IDNA-encoded) or an IPv4 address
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_HEADER_VALUE = re.compile(r"^[\t\x20-\x7e]*$")  # what httpx can send: printable ASCII


class _SemCookies(http.cookiejar.DefaultCookiePolicy):
    """The pooled client keeps no cookie: one job's session must never ride on another's request."""

    def set_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False


async def _guardar_location(response: httpx.Response) -> None:
    """Hide a redirect from httpx: even when not following, it parses ``Location`` before returning
    and raises a (retried) protocol error on one it cannot parse; :func:`_redirecionamento` judges
    it instead, as a permanent failure."""
    if response.status_code in _REDIRECTS and "location" in response.headers:
        response.headers[LOCATION] = response.headers.pop("location")


def client() -> httpx.AsyncClient:
    """The running loop's pooled client: connection reuse across jobs, never across loops.

    It follows no redirect itself (:func:`baixar` does, checking every hop) and dials through
    :mod:`escavadores._rede`, which refuses the networks in ``ORQ_FETCH_DENY``.
    """
    loop = asyncio.get_running_loop()
    pooled = _clients.get(loop)
    if pooled is None or pooled.is_closed:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=16)
        pooled = httpx.AsyncClient(
            follow_redirects=False,
            cookies=http.cookiejar.CookieJar(policy=_SemCookies()),
            transport=transporte(limits),
            event_hooks={"response": [_guardar_location]},
        )
        _clients[loop] = pooled
    return pooled


def check_url(url: object, campo: str = "url") -> str:
    """An absolute http(s) URL, or PermanentFailure: no retry makes a bad URL good."""
    if not isinstance(url, str):
        raise PermanentFailure(f"payload needs {campo!r} with an http(s) URL, got {url!r}")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as exc:
        raise PermanentFailure(f"{campo!r} {url[:200]!r} is not a valid URL: {exc}") from None
    if parsed.scheme not in ("http", "https"):
        raise PermanentFailure(f"payload needs {campo!r} with an http(s) URL, got {url[:200]!r}")
    if not parsed.host:
        raise PermanentFailure(f"URL {url[:200]!r} has no host")
    host = parsed.raw_host.decode("ascii", errors="replace")
    if not (_HOST.match(host) or ":" in host) or not 0 < (parsed.port or 80) < 65536:
        raise PermanentFailure(f"URL {url[:200]!r} has an invalid host or port")  # no DNS makes it valid
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


def _origem(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    return parts.scheme, parts.hostname, port or {"http": 80, "https": 443}.get(parts.scheme)


def mesma_origem(origem: str, destino: str) -> bool:
    """Whether a request to ``destino`` may carry the headers a payload gave for ``origem``.

    Same scheme, host and port, or the same host upgraded from http to https on the default
    ports (httpx's own rule for Authorization): a payload's API key or cookie goes nowhere else.
    """
    a, b = _origem(origem), _origem(destino)
    return a == b or (a == ("http", b[1], 80) and b == ("https", a[1], 443))


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
    number = finito(value)
    if number is None or number <= minimo:
        shown = repr(value)[:40]
        raise PermanentFailure(f"payload option {chave!r} must be a number above {minimo:g}, got {shown}")
    return number


def inteiro(payload: dict[str, Any], chave: str, padrao: int, *, minimo: int = 1) -> int:
    """A whole-number payload option (a bound such as ``max_pages``), at least ``minimo``."""
    value = payload.get(chave, padrao)
    if value is None:
        return padrao
    if isinstance(value, bool) or not isinstance(value, int) or value < minimo:
        raise PermanentFailure(f"payload option {chave!r} must be a whole number >= {minimo}, got {value!r}")
    return value


def _acima_do_teto(chave: str, valor: float, env: str, teto: float, opcao: str) -> PermanentFailure:
    return PermanentFailure(
        f"payload option {chave!r}={str(valor)[:40]} is above this worker's ceiling {env}={teto:g}: ask for "
        f"less, or have the operator raise {env} (orq worker {opcao})"
    )


def max_bytes(payload: dict[str, Any], padrao: int) -> int:
    """The payload's ``max_bytes``, within the worker's ``ORQ_FETCH_MAX_BYTES`` (50 MiB).

    A payload that asks for more is refused rather than cut down, so the sender learns why; a
    payload that does not ask gets the plugin's default, lowered to the ceiling if need be.
    """
    teto = int(ceiling(ENV_FETCH_MAX_BYTES, DEFAULT_FETCH_MAX_BYTES))
    valor = inteiro(payload, "max_bytes", min(padrao, teto))
    if valor > teto:
        raise _acima_do_teto("max_bytes", valor, ENV_FETCH_MAX_BYTES, teto, "--max-fetch-bytes")
    return valor


def timeout(payload: dict[str, Any], padrao: float = DEFAULT_TIMEOUT) -> float:
    """The payload's ``timeout`` (a deadline per fetch), within ``ORQ_FETCH_MAX_TIMEOUT`` (120 s)."""
    teto = ceiling(ENV_FETCH_MAX_TIMEOUT, DEFAULT_FETCH_MAX_TIMEOUT)
    valor = numero(payload, "timeout", min(padrao, teto))
    if valor > teto:
        raise _acima_do_teto("timeout", valor, ENV_FETCH_MAX_TIMEOUT, teto, "--max-fetch-timeout")
    return valor


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


def cabecalhos(payload: dict[str, Any], chave: str = "headers") -> dict[str, str]:
    """The payload's request headers (an object of names to strings), checked by :func:`validar`."""
    return validar(texto_dict(payload, chave), chave)


def validar(headers: dict[str, str], chave: str) -> dict[str, str]:
    """Refuse up front headers HTTP cannot carry.

    A line break would split the request, and httpx refuses non-ASCII values at send time, which
    would otherwise look like a network error and be retried. Values are never echoed: they are
    often credentials.
    """
    for name, value in headers.items():
        if not _HEADER_NAME.match(name):
            raise PermanentFailure(f"payload option {chave}: {name[:80]!r} is not a valid header name")
        if not _HEADER_VALUE.match(value):
            raise PermanentFailure(f"payload option {chave!r} must be printable ASCII on one line ({name})")
    return headers


class HTTPStatusFailure(PermanentFailure):
    """A 4xx answer other than 408/429; ``status`` lets a caller treat some of them as an end."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Resposta:
    """A successful answer: final URL after redirects, headers, Link relations and body.

    ``truncado`` says the body was cut at ``max_bytes`` (only when the caller asked for that).
    """

    status: int
    url: str
    headers: httpx.Headers
    links: dict[str, str]
    body: bytes
    encoding: str | None = None
    truncado: bool = False


async def baixar(
    url: str,
    *,
    timeout: float,
    max_bytes: int,
    truncar: bool = False,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    privados: dict[str, str] | None = None,
    origem: str | None = None,
    robots: bool = True,
) -> Resposta:
    """GET ``url``, following redirects, within one deadline of ``timeout`` seconds.

    ``timeout`` bounds the whole fetch (every hop and the body), so a server that drips a byte
    now and then cannot hold a job. ``headers`` go on every hop; ``privados`` (the payload's own
    headers: API keys, cookies) only to hops on the origin of ``origem`` (default ``url``). A
    redirect to anything but http(s) is a ``PermanentFailure``, as are more than
    ``MAX_REDIRECTS`` hops. 429, 408 and 5xx raise ``Retry`` (honouring Retry-After); other
    statuses are returned. A body over ``max_bytes`` is cut (``truncar``) or a
    ``PermanentFailure``. Every hop is first checked against its origin's robots.txt
    (:mod:`escavadores._robots`; ``robots=False`` only for robots.txt itself). Connection
    errors propagate as httpx exceptions, which the runtime retries; running out of time is an
    ``httpx.TimeoutException``, retried too.
    """
    if params:  # merged into the URL's own query: httpx's params= would replace it
        url = str(httpx.URL(url).copy_merge_params(params))
    try:
        async with asyncio.timeout(timeout):
            return await _seguir(
                url, timeout, max_bytes, truncar, headers or {}, privados or {}, origem or url, robots
            )
    except TimeoutError:
        raise httpx.TimeoutException(
            f"{url}: no complete answer within {timeout:g}s (the payload's 'timeout' bounds the whole fetch)"
        ) from None


async def _seguir(
    url: str,
    timeout: float,
    max_bytes: int,
    truncar: bool,
    headers: dict[str, str],
    privados: dict[str, str],
    origem: str,
    robots: bool,
) -> Resposta:
    cliente = client()
    cookies = httpx.Cookies()  # this fetch's own, across its redirects
    atual = url
    for _ in range(MAX_REDIRECTS + 1):
        if robots:
            await _robots.verificar(atual, leitor_robots(timeout))
        enviar = httpx.Headers({"User-Agent": user_agent()})
        enviar.update(headers)  # case-insensitive: a payload's user-agent replaces ours
        if mesma_origem(origem, atual):
            enviar.update(privados)
        sessao = _sessoes.sessao_para(atual)
        if sessao is not None:
            await sessao.entrar(cliente, timeout)
        request = cliente.build_request("GET", atual, headers=enviar, timeout=timeout)
        cookies.set_cookie_header(request)
        if sessao is not None:
            sessao.assinar(request)  # the worker's credentials for this origin, never another's
        resp = await cliente.send(request, stream=True)
        try:
            if sessao is not None and resp.status_code in (401, 403) and sessao.expirou():
                raise Retry(f"{atual} answered {resp.status_code}: its session logs in again, then the job")
            cookies.extract_cookies(resp)
            if LOCATION in resp.headers:
                atual = _redirecionamento(resp)
                continue
            return await _ler(resp, max_bytes, truncar)
        finally:
            await resp.aclose()
    raise PermanentFailure(f"{url} redirected more than {MAX_REDIRECTS} times")


def leitor_robots(timeout: float) -> _robots.Buscar:
    """How :mod:`escavadores._robots` fetches a robots.txt: this client, without its own check."""

    async def buscar(url: str) -> tuple[int, bytes]:
        resp = await baixar(url, timeout=timeout, max_bytes=_robots.MAX_BYTES, truncar=True, robots=False)
        return resp.status, resp.body

    return buscar


def _redirecionamento(resp: httpx.Response) -> str:
    location = resp.headers[LOCATION]
    try:
        proximo = resp.url.join(location).copy_with(fragment=None)
    except (httpx.InvalidURL, ValueError):
        proximo = None
    if proximo is None or proximo.scheme not in ("http", "https") or not proximo.host:
        raise PermanentFailure(f"{resp.url} redirects to {location[:200]!r}: only http(s) URLs are fetched")
    return str(proximo)


async def _ler(resp: httpx.Response, max_bytes: int, truncar: bool) -> Resposta:
    status = resp.status_code
    if status in (408, 429) or status >= 500:
        raise Retry(f"{resp.url} answered {status}", delay=retry_after(resp))
    body = bytearray()
    truncado = False
    async for chunk in resp.aiter_bytes():
        body += chunk
        if len(body) > max_bytes:
            if not truncar:
                raise PermanentFailure(
                    f"{resp.url} is larger than max_bytes={max_bytes}; raise max_bytes to fetch it"
                )
            truncado = True
            del body[max_bytes:]
            break
    final = str(resp.url)
    links = {rel: urljoin(final, link["url"]) for rel, link in resp.links.items() if link.get("url")}
    return Resposta(status, final, resp.headers, links, bytes(body), resp.encoding, truncado)


async def buscar(url: str, **opcoes: Any) -> Resposta:
    """:func:`baixar` for a document that is useless unless it is there whole (JSON, XML).

    Any 4xx other than 408/429 is a ``HTTPStatusFailure`` naming the status: asking again gets
    the same answer. Takes :func:`baixar`'s options.
    """
    resp = await baixar(url, **opcoes)
    if resp.status >= 400:
        raise HTTPStatusFailure(f"{resp.url} answered {resp.status}", resp.status)
    return resp
