"""``http``: fetch one web page, report what is on it and extract the fields a payload asks for.

Payload: ``{"url": "https://…"}`` plus optional ``seletores`` (named fields to CSS/XPath rules,
see :mod:`escavadores._seletores`), ``timeout`` (seconds for the whole fetch, 20),
``user_agent`` (sent to the URL's origin only) and ``max_bytes`` (5 MiB; the page is cut
there). Result: HTTP status, final URL after redirects, title, meta description, headings,
absolute links, the length of the visible text and ``campos`` (the extracted fields). A 408,
429 or 5xx answer is retried later (honouring Retry-After); another 4xx answer is a result, not
a failure: the page said so.

The page is parsed once, by lxml; a big page is parsed in a thread (lxml lets go of the GIL
while it parses), so the worker's event loop keeps fetching meanwhile.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import Field

from escavadores import _http_client as web
from escavadores._seletores import Seletores, ler_seletores
from escavadores.html_page import analisar
from orquestrador import Contexto, PermanentFailure, escavador
from orquestrador.plugins import PayloadModel, payload_dict

DEFAULT_MAX_BYTES = 5 * 1024 * 1024
PARSE_IN_THREAD = 64 * 1024  # below this, handing the parse to a thread costs more than it saves


class PedidoHttp(PayloadModel):
    """The ``http`` escavador's payload (other fields are kept and ignored)."""

    url: str = Field(description="absolute http(s) URL of the page")
    seletores: Seletores | None = Field(
        default=None, description="fields to extract: name -> CSS string or rule object; result 'campos'"
    )
    timeout: float | None = Field(default=None, description="seconds for the whole fetch (20)")
    max_bytes: int | None = Field(default=None, description="cut the page there (5 MiB)")
    user_agent: str | None = Field(default=None, description="sent to the URL's origin only")


def _html(body: bytes, content_type: str) -> bool:
    if "html" in content_type:
        return True
    return body.lstrip(b"\xef\xbb\xbf \t\r\n")[:15].lower().startswith((b"<!doctype", b"<html"))


@escavador("http", timeout=120, schema=PedidoHttp)
async def coletar_pagina(payload: dict[str, Any] | PedidoHttp, ctx: Contexto) -> dict[str, Any]:
    dados = payload_dict(payload)
    url = web.check_url(dados.get("url"))
    regras = ler_seletores(dados.get("seletores"))
    timeout = web.timeout(dados)
    max_bytes = web.max_bytes(dados, DEFAULT_MAX_BYTES)
    user_agent = dados.get("user_agent")
    if user_agent is not None and not isinstance(user_agent, str):
        raise PermanentFailure(f"payload option 'user_agent' must be text, got {type(user_agent).__name__}")
    privados = web.validar({"User-Agent": user_agent}, "user_agent") if user_agent else {}
    resp = await web.baixar(url, timeout=timeout, max_bytes=max_bytes, truncar=True, privados=privados)
    ctx.progress(0.5, "downloaded")
    content_type = resp.headers.get("content-type", "")
    page = None
    if regras or _html(resp.body, content_type):
        if len(resp.body) >= PARSE_IN_THREAD:
            page = await asyncio.to_thread(analisar, resp.body, resp.url, content_type, regras)
        else:
            page = analisar(resp.body, resp.url, content_type, regras)
    return {
        "status": resp.status,
        "url_final": resp.url,
        "content_type": content_type,
        "titulo": page.titulo if page else None,
        "descricao": page.descricao if page else None,
        "headings": page.headings if page else [],
        "links": page.links if page else [],
        "tamanho_texto": page.tamanho_texto if page else len(resp.body),
        "campos": page.campos if page else {},
        "campos_truncados": page.campos_truncados if page else [],
        "bytes": len(resp.body),
        "truncado": resp.truncado,
    }
