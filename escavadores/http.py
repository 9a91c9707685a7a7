"""``http``: fetch one web page and report what is on it.

Payload: ``{"url": "https://…"}`` plus optional ``timeout`` (seconds for the whole fetch, 20),
``user_agent`` (sent to the URL's origin only) and ``max_bytes`` (5 MiB; the page is cut
there). Result: HTTP status, final URL after redirects, title, meta description, headings,
absolute links, and the length of the visible text. A 408, 429 or 5xx answer is retried later
(honouring Retry-After); another 4xx answer is a result, not a failure: the page said so.
"""

from __future__ import annotations

from typing import Any

from escavadores import _http_client as web
from escavadores.html_page import parse_html
from orquestrador import Contexto, PermanentFailure, escavador

DEFAULT_MAX_BYTES = 5 * 1024 * 1024


@escavador("http", timeout=120)
async def coletar_pagina(payload: dict[str, Any], ctx: Contexto) -> dict[str, Any]:
    url = web.check_url(payload.get("url"))
    timeout = web.timeout(payload)
    max_bytes = web.max_bytes(payload, DEFAULT_MAX_BYTES)
    user_agent = payload.get("user_agent")
    if user_agent is not None and not isinstance(user_agent, str):
        raise PermanentFailure(f"payload option 'user_agent' must be text, got {type(user_agent).__name__}")
    privados = web.validar({"User-Agent": user_agent}, "user_agent") if user_agent else {}
    resp = await web.baixar(url, timeout=timeout, max_bytes=max_bytes, truncar=True, privados=privados)
    text = resp.body.decode(resp.encoding or "utf-8", errors="replace")
    ctx.progress(0.5, "downloaded")
    content_type = resp.headers.get("content-type", "")
    is_html = "html" in content_type or text.lstrip()[:15].lower().startswith(("<!doctype", "<html"))
    page = parse_html(text, resp.url) if is_html else None
    return {
        "status": resp.status,
        "url_final": resp.url,
        "content_type": content_type,
        "titulo": page.titulo if page else None,
        "descricao": page.descricao if page else None,
        "headings": page.headings if page else [],
        "links": page.links if page else [],
        "tamanho_texto": len(page.texto) if page else len(text),
        "bytes": len(resp.body),
        "truncado": resp.truncado,
    }
