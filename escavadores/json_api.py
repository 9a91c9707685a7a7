"""``json_api``: fetch every page of a JSON API and return its records as one list.

Payload: ``{"url": "https://…"}`` plus optional

- ``params`` / ``headers``: query parameters and request headers (objects of strings/numbers);
  ``headers`` (API keys, tokens) are sent only to the origin of ``url``, never to a next link
  or a redirect that points elsewhere;
- ``records_path``: dotted path to the list of records in each page (``"data.items"``; a number
  indexes a list). Default: the page itself if it is a list, else the first of ``items``,
  ``results``, ``data``, ``records``, ``entries``, ``rows`` that holds a list;
- ``paginacao``: a style name or an object ``{"tipo": style, ...options}``:

  ``page``       ``param`` (default ``"page"``) counts up from ``inicio`` (1); with ``tamanho``
                 the page size is sent as ``tamanho_param`` (default ``"per_page"``).
  ``offset``     ``param`` (``"offset"``) starts at ``inicio`` (0) and grows by the records
                 received, ``tamanho`` (100) is sent as ``tamanho_param`` (``"limit"``).
  ``cursor``     the value at ``caminho`` (``"next_cursor"``) in each answer is sent as ``param``
                 (``"cursor"``); ``inicio`` is an optional first cursor.
  ``next_link``  the URL at ``caminho`` in the body, else the ``Link: <…>; rel="next"`` header.

  Without ``paginacao`` one page is fetched;
- ``max_pages`` (50), ``timeout`` (seconds for each page's whole fetch, 20), ``max_bytes`` (per
  page, 10 MiB; at most the worker's ``ORQ_FETCH_MAX_BYTES``).

Paging stops at an empty page, a missing or repeated cursor/next link, ``max_pages``, or once the
pages fetched add up to ``ORQ_FETCH_MAX_BYTES`` (they are all held in memory).
Result: ``{"records": [...], "paginas": requests made, "total": len(records), "truncado": True
if max_pages or the byte ceiling stopped it}``. The result travels in one broker message (1 MiB by
default), so bound big APIs with ``max_pages``.

Failures: 429/408/5xx are retried (honouring Retry-After) and the job starts over from the
first page; other 4xx, bad options and malformed JSON dead-letter at once. With ``page`` and
``offset``, a 400/404/416 after the first page is read as "past the last page" (WordPress and
others answer so) and ends the paging. Timeouts propagate and are retried by the runtime.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from escavadores import _http_client as web
from escavadores._http_client import HTTPStatusFailure, Resposta, http_url
from orquestrador import Contexto, PermanentFailure, Retry, escavador
from orquestrador.plugins import PayloadModel, payload_dict
from orquestrador.settings import DEFAULT_FETCH_MAX_BYTES, ENV_FETCH_MAX_BYTES, ceiling

DEFAULT_MAX_PAGES = 50
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
COMMON_RECORD_KEYS = ("items", "results", "data", "records", "entries", "rows")
END_OF_PAGES_STATUSES = (400, 404, 416)
ACCEPT = {"Accept": "application/json"}

_STYLES: dict[str, dict[str, Any]] = {
    "page": {"param": "page", "inicio": 1, "tamanho_param": "per_page", "tamanho": None},
    "offset": {"param": "offset", "inicio": 0, "tamanho_param": "limit", "tamanho": 100},
    "cursor": {"param": "cursor", "inicio": None, "caminho": "next_cursor"},
    "next_link": {"caminho": None},
}
_MISSING = object()


class PedidoJsonApi(PayloadModel):
    """The ``json_api`` escavador's payload (other fields are kept and ignored)."""

    url: str = Field(description="absolute http(s) URL of the first page")
    params: dict[str, str | int | float | bool] | None = Field(
        default=None, description="query parameters of the first page"
    )
    headers: dict[str, str | int | float | bool] | None = Field(
        default=None, description="request headers (API keys, tokens), sent to the origin of 'url' only"
    )
    records_path: str | None = Field(
        default=None, description="dotted path to the list of records in each page ('data.items')"
    )
    paginacao: str | dict[str, Any] | None = Field(
        default=None,
        description="page, offset, cursor or next_link, or an object {'tipo': style, ...options}",
    )
    max_pages: int | None = Field(default=None, description="pages fetched at most (50)")
    timeout: float | None = Field(default=None, description="seconds for each page's whole fetch (20)")
    max_bytes: int | None = Field(default=None, description="per page (10 MiB)")


@dataclass(frozen=True)
class Paginacao:
    """How to ask for the next page; options not used by ``tipo`` keep their defaults."""

    tipo: str | None
    param: str = ""
    inicio: Any = None
    tamanho_param: str = ""
    tamanho: int | None = None
    caminho: str | None = None


def ler_paginacao(value: object) -> Paginacao:
    """Validate the ``paginacao`` option up front: a typo should dead-letter, not page forever."""
    if value is None or value == "none":
        return Paginacao(None)
    spec = {"tipo": value} if isinstance(value, str) else value
    if not isinstance(spec, dict) or spec.get("tipo") not in _STYLES:
        raise PermanentFailure(
            f"payload option 'paginacao' must be one of {', '.join(_STYLES)} (or an object with "
            f"'tipo' set to one), got {value!r}"
        )
    tipo = spec["tipo"]
    defaults = _STYLES[tipo]
    unknown = set(spec) - {"tipo", *defaults}
    if unknown:
        raise PermanentFailure(
            f"paginacao {tipo!r} takes {', '.join(sorted(defaults))}; unknown: {', '.join(sorted(unknown))}"
        )
    options = {**defaults, **{k: v for k, v in spec.items() if k != "tipo" and v is not None}}
    for key in ("param", "tamanho_param", "caminho"):
        if (
            key in options
            and options[key] is not None
            and not (isinstance(options[key], str) and options[key])
        ):
            raise PermanentFailure(
                f"paginacao option {key!r} must be a non-empty string, got {options[key]!r}"
            )
    if tipo in ("page", "offset"):
        for key in ("inicio", "tamanho"):
            value_ = options[key]
            if value_ is not None and (isinstance(value_, bool) or not isinstance(value_, int) or value_ < 0):
                raise PermanentFailure(
                    f"paginacao option {key!r} must be a whole number >= 0, got {value_!r}"
                )
    return Paginacao(tipo, **options)


def pegar(data: Any, caminho: str) -> Any:
    """The value at a dotted path (``"meta.next"``, ``"data.0.items"``), or ``_MISSING``."""
    node = data
    for part in caminho.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.lstrip("-").isdigit() and -len(node) <= int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node


def registros(page: Any, records_path: str | None, url: str) -> tuple[list[Any], str | None]:
    """The records of one page and the path they were found at (reused for the next pages)."""
    if records_path is None:
        if isinstance(page, list):
            return page, None
        if isinstance(page, dict):
            for key in COMMON_RECORD_KEYS:
                if isinstance(page.get(key), list):
                    return page[key], key
        shown = (
            f"keys {', '.join(map(repr, list(page)[:12]))}" if isinstance(page, dict) else type(page).__name__
        )
        raise PermanentFailure(
            f"{url}: no list of records in the answer ({shown}); set 'records_path' to where it is"
        )
    found = pegar(page, records_path)
    if found is _MISSING:
        raise PermanentFailure(f"{url}: records_path {records_path!r} is not in the answer")
    if found is None:
        return [], records_path
    if not isinstance(found, list):
        raise PermanentFailure(
            f"{url}: records_path {records_path!r} holds a {type(found).__name__}, not a list"
        )
    return found, records_path


def ler_json(resp: Resposta) -> Any:
    """Parse a page; a body that is not JSON will not become JSON on retry."""
    try:
        return json.loads(resp.body)
    except (ValueError, RecursionError) as exc:
        raise PermanentFailure(
            f"{resp.url} did not answer valid JSON ({exc}); the body starts with {resp.body[:80]!r}"
        ) from None


@escavador("json_api", timeout=300, schema=PedidoJsonApi)
async def coletar_json(pedido: dict[str, Any] | PedidoJsonApi, ctx: Contexto) -> dict[str, Any]:
    """Fetch page after page until the API says there are no more, or ``max_pages``."""
    payload = payload_dict(pedido)
    url = web.check_url(payload.get("url"))
    params = web.texto_dict(payload, "params")
    privados = web.cabecalhos(payload)  # API keys, tokens: for the origin of url only
    timeout = web.timeout(payload)
    max_bytes = web.max_bytes(payload, DEFAULT_MAX_BYTES)
    max_pages = web.inteiro(payload, "max_pages", DEFAULT_MAX_PAGES)
    teto = ceiling(ENV_FETCH_MAX_BYTES, DEFAULT_FETCH_MAX_BYTES)  # all pages together, in memory
    records_path = payload.get("records_path")
    if records_path is not None and not (isinstance(records_path, str) and records_path):
        raise PermanentFailure(f"payload option 'records_path' must be a dotted path, got {records_path!r}")
    pag = ler_paginacao(payload.get("paginacao"))

    records: list[Any] = []
    paginas = 0
    baixados = 0
    truncado = False
    numero_pagina = pag.inicio  # page number, offset or cursor, by style
    atual: str = url
    vistos: set[str] = {url}
    while True:
        if paginas >= max_pages or baixados >= teto:
            truncado = True
            break
        if ctx.cancelado.is_set():
            raise Retry("the worker is shutting down; the job starts over elsewhere")
        query = dict(params) if atual == url else None  # a next link carries its own query
        if query is not None and pag.tipo in ("page", "offset", "cursor"):
            if numero_pagina is not None:
                query[pag.param] = str(numero_pagina)
            if pag.tamanho is not None:
                query[pag.tamanho_param] = str(pag.tamanho)
        try:
            resp = await web.buscar(
                atual, timeout=timeout, max_bytes=max_bytes, params=query, headers=ACCEPT,
                privados=privados, origem=url,
            )  # fmt: skip
        except HTTPStatusFailure as exc:
            if paginas and pag.tipo in ("page", "offset") and exc.status in END_OF_PAGES_STATUSES:
                ctx.log.info("page %s answered %d: taken as the end of the pages", numero_pagina, exc.status)
                break
            raise
        paginas += 1
        baixados += len(resp.body)
        page = ler_json(resp)
        itens, records_path = registros(page, records_path, resp.url)
        records.extend(itens)
        ctx.progress(paginas / max_pages, f"página {paginas}: {len(records)} registros")
        if not itens or pag.tipo is None:
            break
        if pag.tipo == "page":
            numero_pagina += 1
        elif pag.tipo == "offset":
            numero_pagina += len(itens)
        elif pag.tipo == "cursor":
            cursor = pegar(page, pag.caminho or "")
            if cursor is _MISSING or cursor in (None, "") or isinstance(cursor, dict | list):
                break
            if str(cursor) in vistos:
                ctx.log.warning("cursor %r came back again: stopping", cursor)
                break
            vistos.add(str(cursor))
            numero_pagina = cursor
        else:
            proximo = _proximo_link(page, pag.caminho, resp)
            if proximo is None:
                break
            if proximo in vistos:
                ctx.log.warning("next link %s was already fetched: stopping", proximo)
                break
            vistos.add(proximo)
            atual = proximo
    return {"records": records, "paginas": paginas, "total": len(records), "truncado": truncado}


def _proximo_link(page: Any, caminho: str | None, resp: Resposta) -> str | None:
    """The next page's absolute URL: from the body when ``caminho`` finds one, else the Link header."""
    found = pegar(page, caminho) if caminho is not None else None
    return http_url(found, resp.url) or http_url(resp.links.get("next"), resp.url)
