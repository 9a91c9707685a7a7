"""``http``: fetch one web page and report what is on it.

Payload: ``{"url": "https://…"}`` plus optional ``timeout`` (seconds), ``user_agent`` and
``max_bytes``. Result: HTTP status, final URL after redirects, title, meta description,
headings, absolute links, and the length of the visible text. A 429 or 5xx answer is retried
later (honouring Retry-After); a 4xx answer is a result, not a failure: the page said so.
"""

from __future__ import annotations

from typing import Any

from escavadores._http_client import DEFAULT_TIMEOUT, check_url, client, retry_after
from escavadores.html_page import parse_html
from orquestrador import Contexto, Retry, escavador

DEFAULT_MAX_BYTES = 5 * 1024 * 1024


@escavador("http", timeout=120)
async def coletar_pagina(payload: dict[str, Any], ctx: Contexto) -> dict[str, Any]:
    url = check_url(payload.get("url"))
    timeout = float(payload.get("timeout", DEFAULT_TIMEOUT))
    max_bytes = int(payload.get("max_bytes", DEFAULT_MAX_BYTES))
    headers = {"User-Agent": payload["user_agent"]} if payload.get("user_agent") else {}
    async with client().stream("GET", url, timeout=timeout, headers=headers) as resp:
        if resp.status_code == 429 or resp.status_code >= 500:
            raise Retry(f"{url} answered {resp.status_code}", delay=retry_after(resp))
        body = bytearray()
        truncated = False
        async for chunk in resp.aiter_bytes():
            body += chunk
            if len(body) > max_bytes:
                truncated = True
                break
        text = bytes(body[:max_bytes]).decode(resp.encoding or "utf-8", errors="replace")
    ctx.progress(0.5, "downloaded")
    content_type = resp.headers.get("content-type", "")
    is_html = "html" in content_type or text.lstrip()[:15].lower().startswith(("<!doctype", "<html"))
    page = parse_html(text, str(resp.url)) if is_html else None
    return {
        "status": resp.status_code,
        "url_final": str(resp.url),
        "content_type": content_type,
        "titulo": page.titulo if page else None,
        "descricao": page.descricao if page else None,
        "headings": page.headings if page else [],
        "links": page.links if page else [],
        "tamanho_texto": len(page.texto) if page else len(text),
        "bytes": len(body[:max_bytes]),
        "truncado": truncated,
    }
