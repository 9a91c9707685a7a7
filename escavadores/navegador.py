"""``navegador``: a page rendered by headless Chromium, for content that only JavaScript puts there.

Payload: ``{"url": "https://…"}`` plus optional ``seletores`` (the same rules as ``http``),
``esperar`` (a CSS selector to wait for), ``esperar_rede`` (wait until the network is idle
instead of the load event), ``timeout`` (seconds for the whole page, 30, within the worker's
``ORQ_FETCH_MAX_TIMEOUT``), ``max_bytes`` (per request, 5 MiB) and ``screenshot`` (true: a PNG
of the page, ``pagina_inteira`` for the full length) written under the ``salvar`` dataset root
(``dataset`` / ``diretorio`` resolve as for ``salvar``) as
``[<dataset>/]screenshots/data=<YYYY-MM-DD>/<message_id>.png``.

Result: the same fields as ``http`` (status, final URL, title, description, headings, links,
text length, ``campos``), read from the rendered DOM, plus ``requisicoes`` (requests the page
made) and ``screenshot`` (the PNG's path or None).

Each worker keeps one browser and a bounded pool of contexts (:mod:`escavadores._chromium`);
every request the page makes is fetched by the worker (:mod:`escavadores._rota`), so the
address policy, robots.txt and per-site sessions apply as for ``http``. A page that is not done
by its deadline is closed with its context (its renderer killed) and the job retried; a page
that robots.txt or the address policy refuses is dead-lettered.
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime
from typing import Any

from pydantic import Field

from escavadores import _chromium, _rota
from escavadores import _http_client as web
from escavadores._seletores import Seletores, ler_seletores
from escavadores.html_page import analisar
from orquestrador import Contexto, PermanentFailure, Retry, escavador
from orquestrador.plugins import PayloadModel, payload_dict

DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_BYTES = 5 * 1024 * 1024


class PedidoNavegador(PayloadModel):
    """The ``navegador`` escavador's payload (other fields are kept and ignored)."""

    url: str = Field(description="absolute http(s) URL of the page")
    seletores: Seletores | None = Field(default=None, description="fields to extract, as for http")
    esperar: str | None = Field(default=None, description="CSS selector to wait for before reading")
    esperar_rede: bool = Field(default=False, description="wait for network idle, not only the load event")
    timeout: float | None = Field(default=None, description="seconds for the whole page (30)")
    max_bytes: int | None = Field(default=None, description="per request the page makes (5 MiB)")
    screenshot: bool = Field(default=False, description="write a PNG under the salvar dataset root")
    pagina_inteira: bool = Field(default=False, description="screenshot the full page, not the viewport")
    dataset: str | None = Field(default=None, description="salvar dataset the screenshot goes under")
    diretorio: str | None = Field(default=None, description="salvar diretorio, under the dataset root")


def _opcao_texto(dados: dict[str, Any], chave: str) -> str | None:
    valor = dados.get(chave)
    if valor is not None and (not isinstance(valor, str) or not valor.strip()):
        raise PermanentFailure(f"payload option {chave!r} must be non-empty text")
    return valor


def _gravar_png(png: bytes, dados: dict[str, Any], ctx: Contexto) -> str:
    """The screenshot under the salvar dataset root, named after the job (a redelivery rewrites it)."""
    from executores.salvar import diretorio_do_payload

    base = diretorio_do_payload(dados.get("diretorio"), dados.get("dataset"))
    pasta = base / "screenshots" / f"data={datetime.now(UTC).date().isoformat()}"
    pasta.mkdir(parents=True, exist_ok=True)
    nome = "".join(c if c.isalnum() or c in "-_" else "_" for c in ctx.message_id)[:120] or "sem-id"
    destino = pasta / f"{nome}.png"
    temp = pasta / f".{nome}.png.tmp"
    temp.write_bytes(png)
    os.replace(temp, destino)
    return str(destino)


@escavador("navegador", timeout=180, schema=PedidoNavegador)
async def coletar_renderizada(payload: dict[str, Any] | PedidoNavegador, ctx: Contexto) -> dict[str, Any]:
    dados = payload_dict(payload)
    url = web.check_url(dados.get("url"))
    regras = ler_seletores(dados.get("seletores"))
    esperar = _opcao_texto(dados, "esperar")
    timeout = web.timeout(dados, DEFAULT_TIMEOUT)
    max_bytes = web.max_bytes(dados, DEFAULT_MAX_BYTES)
    async with _chromium.pool(_rota.preparar).contexto() as item:
        estado: _rota.Estado = item.estado
        estado.timeout, estado.max_bytes, estado.pedidos = timeout, max_bytes, 0
        estado.recusas.clear()
        page = await item.contexto.new_page()
        try:
            async with asyncio.timeout(timeout):
                status, html, final, png = await _renderizar(page, url, esperar, dados, estado)
        except TimeoutError:
            raise Retry(
                f"{url[:300]} was not done within {timeout:g}s (the payload's 'timeout'); its page was closed"
            ) from None
        finally:
            await _fechar(page)
    ctx.progress(0.8, "rendered")
    if status in (408, 429) or status >= 500:
        raise Retry(f"{final} answered {status}")
    corpo = html.encode("utf-8")
    pagina = analisar(corpo, final, "text/html; charset=utf-8", regras)
    return {
        "status": status, "url_final": final, "titulo": pagina.titulo, "descricao": pagina.descricao,
        "headings": pagina.headings, "links": pagina.links, "tamanho_texto": pagina.tamanho_texto,
        "campos": pagina.campos, "campos_truncados": pagina.campos_truncados, "bytes": len(corpo),
        "requisicoes": estado.pedidos,
        "screenshot": _gravar_png(png, dados, ctx) if png is not None else None,
    }  # fmt: skip


async def _renderizar(
    page: Any, url: str, esperar: str | None, dados: dict[str, Any], estado: _rota.Estado
) -> tuple[int, str, str, bytes | None]:
    from playwright.async_api import Error as PlaywrightError
    from playwright.async_api import TimeoutError as PlaywrightTimeout

    page.set_default_timeout((estado.timeout + 5) * 1000)  # our own deadline comes first
    try:
        resposta = await page.goto(url, wait_until="networkidle" if dados.get("esperar_rede") else "load")
        if esperar:
            await page.wait_for_selector(esperar, state="attached")
        html = await page.content()
        png = None
        if dados.get("screenshot"):
            png = await page.screenshot(full_page=bool(dados.get("pagina_inteira")))
    except PlaywrightError as exc:
        if estado.recusas:
            raise estado.recusas[0] from None
        primeira = (str(exc).strip().splitlines() or ["error"])[0]
        if esperar and not isinstance(exc, PlaywrightTimeout) and "selector" in primeira.lower():
            raise PermanentFailure(f"payload option 'esperar' {esperar[:200]!r}: {primeira[:300]}") from None
        raise Retry(f"{url[:300]}: {primeira[:300]}") from None
    return (resposta.status if resposta is not None else 200), html, page.url, png


async def _fechar(page: Any) -> None:
    try:
        async with asyncio.timeout(_chromium.FECHAR):
            await page.close(run_before_unload=False)
    except Exception:  # the context is closed next anyway when the page did not end well
        return
