"""What a scraper wants from an HTML page, from one lxml parse (through parsel).

The page's bytes go to lxml as they came, with the encoding a browser would pick (the
Content-Type charset, else a byte-order mark, else a ``<meta charset>``, else UTF-8; w3lib's
rules, as in Scrapy); parsel handles bytes the encoding cannot decode without cutting the
document short. The standard summary (title, description, headings, links, text length) and
the payload's field rules read the same tree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

from lxml import etree
from parsel import Selector
from w3lib.encoding import html_body_declared_encoding, http_content_type_encoding, read_bom

from escavadores._seletores import Regra, extrair

_INVISIVEL = ("script", "style", "noscript", "template", "svg")
_E_INVISIVEL = " or ".join(f"self::{t}" for t in _INVISIVEL)
_TEXTO_VISIVEL = etree.XPath(f"//body//text()[not(ancestor::*[{_E_INVISIVEL}])]", smart_strings=False)
_INVISIVEIS = etree.XPath(f"//body//*[{_E_INVISIVEL}][not(ancestor::*[{_E_INVISIVEL}])]")
_TAMANHO = etree.XPath("string-length(normalize-space(.))")
_TAMANHO_BODY = etree.XPath("string-length(normalize-space(//body))")
_TITULO = etree.XPath("string(//title)", smart_strings=False)
_DESCRICAO = etree.XPath(
    "//meta[translate(@name, 'DESCRIPTON', 'descripton')='description']/@content", smart_strings=False
)
_HEADINGS = etree.XPath("//h1 | //h2 | //h3")
_LINKS = etree.XPath("//a/@href", smart_strings=False)
_BASE = etree.XPath("//base/@href", smart_strings=False)


@dataclass
class Page:
    titulo: str | None = None
    descricao: str | None = None
    headings: list[dict[str, str]] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    tamanho_texto: int = 0
    campos: dict[str, Any] = field(default_factory=dict)
    campos_truncados: list[str] = field(default_factory=list)


def codificacao(body: bytes, content_type: str | None) -> str:
    """The encoding to read ``body`` with: header charset, BOM, ``<meta>`` declaration, UTF-8."""
    declarada = http_content_type_encoding(content_type or "")
    if declarada:
        return declarada
    bom, _ = read_bom(body)
    if bom:
        return bom
    return html_body_declared_encoding(body[:4096]) or "utf-8"


def parse(body: bytes, content_type: str | None = None) -> Any:
    """The page's lxml tree (parsel's root), decoded as a browser would."""
    return Selector(body=body or b"<html/>", encoding=codificacao(body, content_type), type="html").root


def _limpo(text: str | None) -> str:
    return " ".join(text.split()) if text else ""


def _absoluto(href: str, base: str, raiz_site: str) -> str | None:
    """``href`` made absolute like ``urljoin``, without its cost for the two common shapes."""
    if "/." in href or "\\" in href:
        url = urljoin(base, href)
    elif href.startswith(("http://", "https://")):
        url = href
    elif href.startswith("/") and not href.startswith("//"):
        url = raiz_site + href
    else:
        url = urljoin(base, href)
    url = url.partition("#")[0]
    return (
        url if url.startswith(("http://", "https://")) or urlsplit(url).scheme in ("http", "https") else None
    )


def _links(raiz: Any, base_url: str) -> list[str]:
    base = _BASE(raiz)
    if base:
        base_url = urljoin(base_url, str(base[0]).strip())
    partes = urlsplit(base_url)
    raiz_site = f"{partes.scheme}://{partes.netloc}"
    vistos: dict[str, None] = {}
    for href in dict.fromkeys(str(h).strip() for h in _LINKS(raiz)):
        if href and not href.startswith("#"):
            absoluto = _absoluto(href, base_url, raiz_site)
            if absoluto is not None:
                vistos[absoluto] = None
    return list(vistos)


def _tamanho_texto(raiz: Any) -> int:
    """About the length of the body's visible text, whitespace collapsed, counted in C (XPath)."""
    total = _TAMANHO_BODY(raiz) - sum(_TAMANHO(no) + 1 for no in _INVISIVEIS(raiz))
    return max(0, int(total))


def analisar(
    body: bytes, base_url: str, content_type: str | None = None, regras: list[Regra] | None = None
) -> Page:
    """One parse: the page's summary and the fields ``regras`` ask for."""
    raiz = parse(body, content_type)
    page = Page(
        titulo=_limpo(_TITULO(raiz)) or None,
        descricao=next((d for d in (_limpo(str(c)) for c in _DESCRICAO(raiz)) if d), None),
        links=_links(raiz, base_url),
        tamanho_texto=_tamanho_texto(raiz),
    )
    for heading in _HEADINGS(raiz):
        texto = _limpo("".join(heading.itertext()))
        if texto:
            page.headings.append({"nivel": heading.tag, "texto": texto})
    if regras:
        page.campos, page.campos_truncados = extrair(raiz, regras)
    return page


def texto_html(markup: str) -> str:
    """The visible text of an HTML fragment (scripts and styles dropped), e.g. a feed entry's."""
    raiz = Selector(text=f"<html><body>{markup}</body></html>", type="html").root
    return _limpo(" ".join(_TEXTO_VISIVEL(raiz)))
