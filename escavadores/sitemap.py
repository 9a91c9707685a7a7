"""``sitemap``: list the URLs a site publishes in its sitemap, ready to fan out to ``http``.

Payload: ``{"url": "https://…/sitemap.xml"}`` plus optional ``max_urls`` (2000), ``max_sitemaps``
(documents fetched, 50), ``timeout`` (seconds for each document's whole fetch, 20), ``max_bytes``
(per sitemap after inflating, 50 MiB: the protocol's own limit; at most the worker's
``ORQ_FETCH_MAX_BYTES``) and ``headers`` (sent only to the origin of ``url``, on every hop).

The document may be a ``<urlset>``, a ``<sitemapindex>`` (its child sitemaps are followed
breadth-first, each once), a gzip file (``.xml.gz``) or a plain-text sitemap (one URL per line).
Elements are matched in the document's own namespace (sitemaps.org 0.9, the old Google one, or
none), so extension elements such as ``<image:loc>`` are not taken for page URLs.

Result: ``{"urls": [{"loc", "lastmod"}…], "total": n, "sitemaps": [fetched sitemap URLs],
"coletas": [{"url": loc}…], "truncado": bool, "erros": [{"url", "erro"}…]}``. ``coletas`` are
payloads for the ``http`` escavador: ``orq.iniciar_coletas("http", job.result["coletas"])``.
URLs are deduplicated in document order; ``truncado`` says ``max_urls`` or ``max_sitemaps`` cut
the walk short. The result travels in one broker message (1 MiB by default), hence the default
``max_urls``.

Failures: the first document's 4xx, malformed or unsafe XML (entity bombs are refused, not
expanded) dead-letter the job. A child sitemap with such a problem is listed in ``erros`` and
skipped, so one dead link in an index does not lose the rest. 429/408/5xx anywhere retry the job
(honouring Retry-After); timeouts propagate and are retried by the runtime.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from pydantic import Field

from escavadores import _http_client as web
from escavadores._http_client import Resposta, http_url
from escavadores._xml import descomprimir, local, namespace, parse_xml, texto
from orquestrador import Contexto, PermanentFailure, Retry, escavador
from orquestrador.plugins import PayloadModel, payload_dict

DEFAULT_MAX_URLS = 2000
DEFAULT_MAX_SITEMAPS = 50
DEFAULT_MAX_BYTES = 50 * 1024 * 1024
ACCEPT = "application/xml, text/xml;q=0.9, application/gzip;q=0.8, text/plain;q=0.5, */*;q=0.1"


def ler_sitemap(resp: Resposta, max_bytes: int) -> tuple[list[tuple[str, str | None]], list[str]]:
    """One fetched document → (page entries as (loc, lastmod), child sitemap URLs)."""
    body = descomprimir(resp.body, max_bytes, resp.url)
    start = body.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not start:
        raise PermanentFailure(f"{resp.url} answered an empty document, not a sitemap")
    if not start.startswith(b"<"):
        return _sitemap_texto(body, resp.url), []
    root = parse_xml(body, resp.url)
    ns = namespace(root.tag)

    def q(name: str) -> str:
        return f"{{{ns}}}{name}" if ns else name

    kind = local(root.tag)
    if kind == "urlset":
        entries = []
        for node in root.findall(q("url")):
            loc = http_url(texto(node.find(q("loc"))), resp.url)
            if loc is not None:
                entries.append((loc, texto(node.find(q("lastmod")))))
        return entries, []
    if kind == "sitemapindex":
        children = [http_url(texto(node.find(q("loc"))), resp.url) for node in root.findall(q("sitemap"))]
        return [], [c for c in children if c is not None]
    raise PermanentFailure(f"{resp.url} is XML but not a sitemap (root element <{kind}>)")


def _sitemap_texto(body: bytes, url: str) -> list[tuple[str, str | None]]:
    """The protocol's text format: one absolute URL per line, nothing else."""
    lines = [line.strip() for line in body.decode("utf-8", errors="replace").splitlines() if line.strip()]
    locs = [http_url(line, url) if "://" in line else None for line in lines]
    if any(loc is None for loc in locs):
        bad = next(line for line, loc in zip(lines, locs, strict=True) if loc is None)
        raise PermanentFailure(f"{url} is neither XML nor a text sitemap (line {bad[:80]!r})")
    return [(loc, None) for loc in locs if loc is not None]


class PedidoSitemap(PayloadModel):
    """The ``sitemap`` escavador's payload (other fields are kept and ignored)."""

    url: str = Field(description="absolute http(s) URL of the sitemap (urlset, index, .xml.gz or text)")
    max_urls: int | None = Field(default=None, description="page URLs listed at most (2000)")
    max_sitemaps: int | None = Field(default=None, description="sitemap documents fetched at most (50)")
    timeout: float | None = Field(default=None, description="seconds for each document's whole fetch (20)")
    max_bytes: int | None = Field(default=None, description="per sitemap after inflating (50 MiB)")
    headers: dict[str, str | int | float | bool] | None = Field(
        default=None, description="request headers (API keys, tokens), sent to the origin of 'url' only"
    )


@escavador("sitemap", timeout=300, schema=PedidoSitemap)
async def coletar_sitemap(pedido: dict[str, Any] | PedidoSitemap, ctx: Contexto) -> dict[str, Any]:
    """Walk a sitemap (and the sitemaps an index points to) and collect page URLs up to the bounds."""
    payload = payload_dict(pedido)
    url = web.check_url(payload.get("url"))
    timeout = web.timeout(payload)
    max_urls = web.inteiro(payload, "max_urls", DEFAULT_MAX_URLS)
    max_sitemaps = web.inteiro(payload, "max_sitemaps", DEFAULT_MAX_SITEMAPS)
    max_bytes = web.max_bytes(payload, DEFAULT_MAX_BYTES)
    privados = web.cabecalhos(payload)  # only for the origin of url

    fila: deque[str] = deque([url])
    na_fila: set[str] = {url}
    buscados: list[str] = []
    erros: list[dict[str, str]] = []
    urls: list[dict[str, str | None]] = []
    locs: set[str] = set()
    truncado = False
    while fila and not truncado:
        if len(urls) >= max_urls or len(buscados) >= max_sitemaps:
            truncado = True
            break
        if ctx.cancelado.is_set():
            raise Retry("the worker is shutting down; the job starts over elsewhere")
        atual = fila.popleft()
        try:
            resp = await web.buscar(
                atual, timeout=timeout, max_bytes=max_bytes, headers={"Accept": ACCEPT},
                privados=privados, origem=url,
            )  # fmt: skip
            entries, children = ler_sitemap(resp, max_bytes)
        except PermanentFailure as exc:
            if atual == url:
                raise
            ctx.log.warning("skipping child sitemap %s: %s", atual, exc)
            erros.append({"url": atual, "erro": str(exc)})
            continue
        buscados.append(atual)
        for child in children:
            if child not in na_fila:
                na_fila.add(child)
                fila.append(child)
        for loc, lastmod in entries:
            if loc in locs:
                continue
            if len(urls) >= max_urls:
                truncado = True
                break
            locs.add(loc)
            urls.append({"loc": loc, "lastmod": lastmod})
        ctx.progress(
            len(buscados) / (len(buscados) + len(fila)), f"{len(buscados)} sitemaps, {len(urls)} URLs"
        )
    return {
        "urls": urls,
        "total": len(urls),
        "sitemaps": buscados,
        "coletas": [{"url": u["loc"]} for u in urls],
        "truncado": truncado,
        "erros": erros,
    }
