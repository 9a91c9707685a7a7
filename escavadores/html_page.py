"""What a scraper wants from an HTML page, with the standard library's tolerant parser.

html.parser copes with broken markup and needs no compiled dependency; pages are parsed once,
in one pass.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urldefrag, urljoin, urlsplit

_SKIP_TEXT = {"script", "style", "noscript", "template", "svg"}
_HEADINGS = {"h1", "h2", "h3"}
_SPACES = re.compile(r"\s+")


@dataclass
class Page:
    titulo: str | None = None
    descricao: str | None = None
    headings: list[dict[str, str]] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    texto: str = ""


class _Parser(HTMLParser):
    def __init__(self, base_url: str) -> None:
        super().__init__(convert_charrefs=True)
        self.base_url = base_url
        self.page = Page()
        self._skip = 0
        self._in_title = False
        self._title: list[str] = []
        self._heading: tuple[str, list[str]] | None = None
        self._text: list[str] = []
        self._seen: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {k: v or "" for k, v in attrs}
        if tag in _SKIP_TEXT:
            self._skip += 1
        elif tag == "title":
            self._in_title = True
        elif tag == "base" and attr.get("href"):
            self.base_url = urljoin(self.base_url, attr["href"])
        elif tag == "meta" and attr.get("name", "").lower() == "description":
            self.page.descricao = _clean(attr.get("content", "")) or None
        elif tag == "a" and attr.get("href"):
            self._link(attr["href"])
        elif tag in _HEADINGS:
            self._heading = (tag, [])

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TEXT and self._skip:
            self._skip -= 1
        elif tag == "title":
            self._in_title = False
        elif tag in _HEADINGS and self._heading and self._heading[0] == tag:
            text = _clean(" ".join(self._heading[1]))
            if text:
                self.page.headings.append({"nivel": tag, "texto": text})
            self._heading = None

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self._title.append(data)
            return
        if self._skip:
            return
        self._text.append(data)
        if self._heading is not None:
            self._heading[1].append(data)

    def _link(self, href: str) -> None:
        absolute, _ = urldefrag(urljoin(self.base_url, href.strip()))
        if urlsplit(absolute).scheme in ("http", "https") and absolute not in self._seen:
            self._seen.add(absolute)
            self.page.links.append(absolute)

    def result(self) -> Page:
        self.page.titulo = _clean(" ".join(self._title)) or None
        self.page.texto = _clean(" ".join(self._text))
        return self.page


def parse_html(html: str, base_url: str) -> Page:
    parser = _Parser(base_url)
    parser.feed(html)
    parser.close()
    return parser.result()


def _clean(text: str) -> str:
    return _SPACES.sub(" ", text).strip()
