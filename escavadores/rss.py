"""``rss``: read an RSS 2.0, RSS 1.0 (RDF) or Atom feed into plain items, ready to fan out to ``http``.

Payload: ``{"url": "https://…/feed"}`` plus optional ``max_itens`` (200), ``max_resumo``
(characters of each summary, 1000), ``timeout`` (seconds for the whole fetch, 20), ``max_bytes``
(10 MiB; at most the worker's ``ORQ_FETCH_MAX_BYTES``) and ``headers`` (sent only to the origin of
``url``, on every hop).

Result: ``{"titulo": feed title, "formato": "rss" | "rdf" | "atom", "itens": [{"titulo", "link",
"publicado", "resumo", "id"}…], "total": n, "truncado": bool, "coletas": [{"url": link}…]}``.

- ``publicado`` is ISO 8601 when the feed's date parses (RFC 822 ``pubDate``, ``dc:date``,
  Atom ``published``/``updated``), the feed's own text when it does not, None when absent.
- ``resumo`` is plain text: the HTML of ``description``/``content:encoded`` or of an Atom
  ``summary``/``content`` of type html/xhtml is reduced to its visible text, then cut at
  ``max_resumo`` so that many items fit in one broker message (1 MiB by default).
- ``link`` is absolute (relative links and Atom ``xml:base`` are resolved); ``id`` is the guid or
  Atom id, else the link. ``coletas`` holds each distinct http(s) link once, as a payload for the
  ``http`` escavador.

Failures: 4xx, malformed or unsafe XML (entity bombs are refused, not expanded) and documents that
are not feeds dead-letter the job; 429/408/5xx retry it (honouring Retry-After); timeouts
propagate and are retried by the runtime.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin

from pydantic import Field

from escavadores import _http_client as web
from escavadores._http_client import http_url
from escavadores._xml import Element, descomprimir, local, namespace, parse_xml, texto
from escavadores.html_page import texto_html
from orquestrador import Contexto, PermanentFailure, escavador
from orquestrador.plugins import PayloadModel, payload_dict

DEFAULT_MAX_ITENS = 200
DEFAULT_MAX_RESUMO = 1000
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
ACCEPT = "application/rss+xml, application/atom+xml, application/xml;q=0.9, text/xml;q=0.8, */*;q=0.1"

ATOM = "http://www.w3.org/2005/Atom"
RSS1 = "http://purl.org/rss/1.0/"
RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
DC = "http://purl.org/dc/elements/1.1/"
CONTENT = "http://purl.org/rss/1.0/modules/content/"
XML_BASE = "{http://www.w3.org/XML/1998/namespace}base"
_SPACES = re.compile(r"\s+")

Item = dict[str, str | None]


def data_iso(value: str | None) -> str | None:
    """A feed date as ISO 8601 (RFC 822 or ISO input), the text itself if unparseable, else None."""
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).isoformat()
    except (TypeError, ValueError, IndexError):
        pass
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return value
    return parsed.date().isoformat() if len(value) == 10 else parsed.isoformat()


def _limpar(text: str | None) -> str | None:
    if not text:
        return None
    return _SPACES.sub(" ", text).strip() or None


def _sem_html(markup: str | None, base: str) -> str | None:
    """Visible text of an HTML fragment (scripts and styles dropped)."""
    if not markup:
        return None
    return texto_html(markup) or None


def _atom_texto(elem: Element | None, base: str) -> str | None:
    """An Atom text construct (title, summary, content) as plain text, by its ``type``."""
    if elem is None:
        return None
    if elem.get("type", "text") in ("html", "text/html"):
        return _sem_html(elem.text, base)
    return _limpar("".join(elem.itertext()))


def _cortar(text: str | None, limite: int) -> str | None:
    if text is None or len(text) <= limite:
        return text
    return text[: limite - 1].rstrip() + "…"


def _item_rss(item: Element, q: Callable[[str], str], base: str) -> Item:
    """An RSS 2.0 ``<item>`` (``q`` = no namespace) or an RSS 1.0 one (``q`` = the RSS 1.0 namespace)."""
    link = http_url(texto(item.find(q("link"))), base)
    guid = item.find("guid")
    if link is None and guid is not None and guid.get("isPermaLink", "true") != "false":
        link = http_url(texto(guid), base)
    if link is None:
        link = _atom_link(item, base)
    data = (
        texto(item.find("pubDate"))
        or texto(item.find(f"{{{DC}}}date"))
        or texto(item.find(f"{{{ATOM}}}updated"))
    )
    corpo = texto(item.find(q("description"))) or texto(item.find(f"{{{CONTENT}}}encoded"))
    titulo = texto(item.find(q("title")))
    return {
        "titulo": _limpar(html.unescape(titulo)) if titulo else None,
        "link": link,
        "publicado": data_iso(data),
        "resumo": _sem_html(corpo, base),
        "id": texto(guid) or item.get(f"{{{RDF}}}about") or link,
    }


def _atom_link(elem: Element, base: str) -> str | None:
    """The ``alternate`` link of an Atom entry (a link without ``rel`` is alternate)."""
    links = elem.findall(f"{{{ATOM}}}link")
    for link in links:
        if link.get("rel", "alternate") == "alternate" and link.get("href"):
            return http_url(link.get("href"), base)
    return None


def _item_atom(entry: Element, base: str) -> Item:
    base = urljoin(base, entry.get(XML_BASE, ""))
    a = f"{{{ATOM}}}"
    resumo = _atom_texto(entry.find(a + "summary"), base) or _atom_texto(entry.find(a + "content"), base)
    link = _atom_link(entry, base)
    return {
        "titulo": _atom_texto(entry.find(a + "title"), base),
        "link": link,
        "publicado": data_iso(texto(entry.find(a + "published")) or texto(entry.find(a + "updated"))),
        "resumo": resumo,
        "id": texto(entry.find(a + "id")) or link,
    }


def ler_feed(root: Element, url: str) -> tuple[str, str | None, list[Item]]:
    """(format, feed title, items) of a parsed feed; anything else is a ``PermanentFailure``."""
    kind, ns = local(root.tag), namespace(root.tag)
    if kind == "rss" and not ns:
        channel = root.find("channel")
        if channel is None:
            raise PermanentFailure(f"{url}: RSS document without a <channel>")
        itens = [_item_rss(i, lambda n: n, url) for i in channel.findall("item")]
        return "rss", _limpar(html.unescape(texto(channel.find("title")) or "")), itens
    if kind == "RDF" and ns == RDF:
        channel = root.find(f"{{{RSS1}}}channel")
        titulo = texto(channel.find(f"{{{RSS1}}}title")) if channel is not None else None
        itens = [_item_rss(i, lambda n: f"{{{RSS1}}}{n}", url) for i in root.findall(f"{{{RSS1}}}item")]
        return "rdf", _limpar(html.unescape(titulo or "")), itens
    if kind == "feed" and ns == ATOM:
        base = urljoin(url, root.get(XML_BASE, ""))
        itens = [_item_atom(e, base) for e in root.findall(f"{{{ATOM}}}entry")]
        return "atom", _atom_texto(root.find(f"{{{ATOM}}}title"), base), itens
    shown = f"{{{ns}}}{kind}" if ns else kind
    raise PermanentFailure(f"{url} is XML but not an RSS or Atom feed (root element <{shown}>)")


class PedidoRss(PayloadModel):
    """The ``rss`` escavador's payload (other fields are kept and ignored)."""

    url: str = Field(description="absolute http(s) URL of the RSS, RDF or Atom feed")
    max_itens: int | None = Field(default=None, description="items kept at most (200)")
    max_resumo: int | None = Field(default=None, description="characters of each summary (1000)")
    timeout: float | None = Field(default=None, description="seconds for the whole fetch (20)")
    max_bytes: int | None = Field(default=None, description="of the feed (10 MiB)")
    headers: dict[str, str | int | float | bool] | None = Field(
        default=None, description="request headers (API keys, tokens), sent to the origin of 'url' only"
    )


@escavador("rss", timeout=120, schema=PedidoRss)
async def coletar_feed(pedido: dict[str, Any] | PedidoRss, ctx: Contexto) -> dict[str, Any]:
    """Fetch one feed and return its newest ``max_itens`` items in the feed's order."""
    payload = payload_dict(pedido)
    url = web.check_url(payload.get("url"))
    timeout = web.timeout(payload)
    max_itens = web.inteiro(payload, "max_itens", DEFAULT_MAX_ITENS)
    max_resumo = web.inteiro(payload, "max_resumo", DEFAULT_MAX_RESUMO)
    max_bytes = web.max_bytes(payload, DEFAULT_MAX_BYTES)
    privados = web.cabecalhos(payload)

    resp = await web.buscar(
        url, timeout=timeout, max_bytes=max_bytes, headers={"Accept": ACCEPT}, privados=privados
    )
    ctx.progress(0.5, "downloaded")
    body = descomprimir(resp.body, max_bytes, resp.url)
    formato, titulo, todos = ler_feed(parse_xml(body, resp.url), resp.url)
    itens = todos[:max_itens]
    for item in itens:
        item["resumo"] = _cortar(item["resumo"], max_resumo)
    coletas: list[dict[str, str]] = []
    vistos: set[str] = set()
    for item in itens:
        link = item["link"]
        if link and link not in vistos:
            vistos.add(link)
            coletas.append({"url": link})
    return {
        "titulo": titulo,
        "formato": formato,
        "itens": itens,
        "total": len(itens),
        "truncado": len(todos) > max_itens,
        "coletas": coletas,
    }
