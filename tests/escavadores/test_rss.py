"""The rss escavador against real RSS 2.0, RSS 1.0 and Atom feeds (and hostile XML) on loopback."""

from __future__ import annotations

import gzip
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import httpx
import pytest

from escavadores.rss import coletar_feed, data_iso
from orquestrador import Contexto, PermanentFailure, Retry

RELEASE = threading.Event()

RSS = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"
     xmlns:content="http://purl.org/rss/1.0/modules/content/">
<channel>
  <title>Notícias &amp;amp; Cia</title>
  <link>{base}/</link>
  <item>
    <title>Primeira   notícia</title>
    <link>{base}/noticia/1</link>
    <pubDate>Wed, 01 May 2024 10:30:00 GMT</pubDate>
    <description><![CDATA[<p>Olá <b>mundo</b></p><script>roubar()</script>]]></description>
    <guid isPermaLink="false">id-1</guid>
  </item>
  <item>
    <title>Segunda</title>
    <guid>{base}/noticia/2</guid>
    <pubDate>Thu, 02 May 2024 09:00:00 -0300</pubDate>
    <content:encoded><![CDATA[<div>Texto <em>completo</em></div>]]></content:encoded>
  </item>
  <item>
    <title>Terceira</title>
    <link>/noticia/3</link>
    <dc:date>2024-05-03T08:00:00Z</dc:date>
    <description>Sem marcação &amp; com e comercial</description>
  </item>
  <item>
    <title>Quarta</title>
    <link>{base}/noticia/1</link>
    <pubDate>ontem à tarde</pubDate>
  </item>
  <item><description>Só um resumo</description></item>
</channel>
</rss>"""

ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xml:base="{base}/blog/">
  <title type="html">&lt;b&gt;Blog&lt;/b&gt; do Zé</title>
  <id>urn:uuid:feed</id>
  <entry>
    <title>Post um</title>
    <link rel="self" href="{base}/api/posts/1"/>
    <link rel="alternate" type="text/html" href="post/1"/>
    <id>urn:uuid:1</id>
    <published>2024-05-01T12:00:00Z</published>
    <updated>2024-05-02T12:00:00Z</updated>
    <summary type="text">Resumo
       simples</summary>
  </entry>
  <entry>
    <title type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml">Post <i>dois</i></div></title>
    <link href="{base}/outro/2"/>
    <id>urn:uuid:2</id>
    <updated>2024-05-04</updated>
    <content type="xhtml">
      <div xmlns="http://www.w3.org/1999/xhtml"><p>Parágrafo <b>rico</b></p></div>
    </content>
  </entry>
  <entry>
    <title>Post longo</title>
    <link href="post/3"/>
    <id>urn:uuid:3</id>
    <content type="html">&lt;p&gt;{longo}&lt;/p&gt;</content>
  </entry>
</feed>"""

RDF = """<?xml version="1.0"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/"
         xmlns:dc="http://purl.org/dc/elements/1.1/">
  <channel rdf:about="{base}/"><title>Canal RDF</title><link>{base}/</link></channel>
  <item rdf:about="{base}/rdf/1">
    <title>Item RDF</title><link>{base}/rdf/1</link>
    <description>Descrição</description><dc:date>2024-04-30T23:59:00-03:00</dc:date>
  </item>
</rdf:RDF>"""

MUITOS = (
    '<rss version="2.0"><channel><title>Muitos</title>'
    + "".join(f"<item><title>n{i}</title><link>{{base}}/n/{i}</link></item>" for i in range(30))
    + "</channel></rss>"
)

_LAUGHS = ['<!ENTITY lol0 "lol">'] + [f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)]
BILLION_LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE rss [\n' + "\n".join(_LAUGHS) + "\n]>\n"
    "<rss><channel><title>&lol9;</title></channel></rss>"
)


def feeds(base: str) -> dict[str, tuple[str, bytes]]:
    xml = "application/rss+xml"
    docs = {
        "/rss.xml": (xml, RSS.format(base=base)),
        "/atom.xml": ("application/atom+xml", ATOM.format(base=base, longo="palavra " * 500)),
        "/rdf.xml": ("application/rdf+xml", RDF.format(base=base)),
        "/muitos.xml": (xml, MUITOS.format(base=base)),
        "/malformado.xml": (xml, "<rss><channel><title>Quebrado</channel></rss>"),
        "/bomba.xml": (xml, BILLION_LAUGHS),
        "/sitemap.xml": ("application/xml", '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"/>'),
        "/sem-canal.xml": (xml, '<rss version="2.0"></rss>'),
        "/json": ("application/json", '{"items": []}'),
    }
    out = {path: (ct, body.encode()) for path, (ct, body) in docs.items()}
    out["/feed.xml.gz"] = ("application/gzip", gzip.compress(out["/rss.xml"][1]))
    return out


class Handler(BaseHTTPRequestHandler):
    docs: ClassVar[dict[str, tuple[str, bytes]]] = {}

    def do_GET(self) -> None:
        if self.path == "/quebrado.xml":
            self._send(502, "text/plain", b"bad gateway")
        elif self.path == "/trava.xml":
            RELEASE.wait(10)
            self._send(200, "application/rss+xml", b"<rss/>")
        elif self.path in self.docs:
            self._send(200, *self.docs[self.path])
        else:
            self._send(404, "text/plain", b"nope")

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    Handler.docs = feeds(base)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield base
    RELEASE.set()
    server.shutdown()


def ctx() -> Contexto:
    return Contexto("c", "m", 1, "rss", logging.LoggerAdapter(logging.getLogger("t"), {}))


async def test_rss_2_items_dates_summaries_links_and_ids(site: str):
    result = await coletar_feed({"url": f"{site}/rss.xml"}, ctx())
    assert result["titulo"] == "Notícias & Cia"
    assert result["formato"] == "rss"
    assert result["itens"] == [
        {
            "titulo": "Primeira notícia",
            "link": f"{site}/noticia/1",
            "publicado": "2024-05-01T10:30:00+00:00",
            "resumo": "Olá mundo",  # HTML reduced to text, the script dropped
            "id": "id-1",
        },
        {
            "titulo": "Segunda",
            "link": f"{site}/noticia/2",  # a permalink guid stands in for the missing <link>
            "publicado": "2024-05-02T09:00:00-03:00",
            "resumo": "Texto completo",
            "id": f"{site}/noticia/2",
        },
        {
            "titulo": "Terceira",
            "link": f"{site}/noticia/3",
            "publicado": "2024-05-03T08:00:00+00:00",
            "resumo": "Sem marcação & com e comercial",
            "id": f"{site}/noticia/3",
        },
        {
            "titulo": "Quarta",
            "link": f"{site}/noticia/1",
            "publicado": "ontem à tarde",  # kept as the feed wrote it
            "resumo": None,
            "id": f"{site}/noticia/1",
        },
        {"titulo": None, "link": None, "publicado": None, "resumo": "Só um resumo", "id": None},
    ]
    assert result["total"] == 5
    assert result["truncado"] is False
    assert result["coletas"] == [
        {"url": f"{site}/noticia/1"},
        {"url": f"{site}/noticia/2"},
        {"url": f"{site}/noticia/3"},
    ]


async def test_atom_text_types_alternate_links_and_xml_base(site: str):
    result = await coletar_feed({"url": f"{site}/atom.xml", "max_resumo": 50}, ctx())
    assert result["titulo"] == "Blog do Zé"
    assert result["formato"] == "atom"
    um, dois, longo = result["itens"]
    assert um == {
        "titulo": "Post um",
        "link": f"{site}/blog/post/1",
        "publicado": "2024-05-01T12:00:00+00:00",  # published wins over updated
        "resumo": "Resumo simples",
        "id": "urn:uuid:1",
    }
    assert dois["titulo"] == "Post dois"
    assert dois["link"] == f"{site}/outro/2"
    assert dois["publicado"] == "2024-05-04"
    assert dois["resumo"] == "Parágrafo rico"
    assert longo["link"] == f"{site}/blog/post/3"
    assert len(longo["resumo"]) == 50 and longo["resumo"].endswith("…")
    assert result["coletas"] == [
        {"url": f"{site}/blog/post/1"},
        {"url": f"{site}/outro/2"},
        {"url": f"{site}/blog/post/3"},
    ]


async def test_rss_1_rdf(site: str):
    result = await coletar_feed({"url": f"{site}/rdf.xml"}, ctx())
    assert result["titulo"] == "Canal RDF"
    assert result["formato"] == "rdf"
    assert result["itens"] == [
        {
            "titulo": "Item RDF",
            "link": f"{site}/rdf/1",
            "publicado": "2024-04-30T23:59:00-03:00",
            "resumo": "Descrição",
            "id": f"{site}/rdf/1",
        }
    ]


async def test_a_gzip_file_is_inflated(site: str):
    result = await coletar_feed({"url": f"{site}/feed.xml.gz"}, ctx())
    assert result["total"] == 5


async def test_max_itens_bounds_the_result(site: str):
    result = await coletar_feed({"url": f"{site}/muitos.xml", "max_itens": 5}, ctx())
    assert [i["titulo"] for i in result["itens"]] == ["n0", "n1", "n2", "n3", "n4"]
    assert result["total"] == 5
    assert result["truncado"] is True
    assert len(result["coletas"]) == 5


async def test_malformed_xml_fails_permanently(site: str):
    with pytest.raises(PermanentFailure, match="not well-formed XML"):
        await coletar_feed({"url": f"{site}/malformado.xml"}, ctx())
    with pytest.raises(PermanentFailure, match="not well-formed XML"):
        await coletar_feed({"url": f"{site}/json"}, ctx())


async def test_billion_laughs_is_refused_not_expanded(site: str):
    started = time.monotonic()
    with pytest.raises(PermanentFailure, match=r"refused as unsafe.*EntitiesForbidden"):
        await coletar_feed({"url": f"{site}/bomba.xml"}, ctx())
    assert time.monotonic() - started < 2


@pytest.mark.parametrize(
    ("path", "match"),
    [
        ("/sitemap.xml", r"not an RSS or Atom feed \(root element <\{http://www.sitemaps.org/"),
        ("/sem-canal.xml", "without a <channel>"),
    ],
)
async def test_xml_that_is_not_a_feed_fails_permanently(site: str, path: str, match: str):
    with pytest.raises(PermanentFailure, match=match):
        await coletar_feed({"url": site + path}, ctx())


async def test_404_fails_permanently_naming_the_status(site: str):
    with pytest.raises(PermanentFailure, match="404"):
        await coletar_feed({"url": f"{site}/sumiu.xml"}, ctx())


async def test_5xx_asks_for_a_retry(site: str):
    with pytest.raises(Retry, match="502"):
        await coletar_feed({"url": f"{site}/quebrado.xml"}, ctx())


async def test_a_server_that_hangs_raises_httpx_timeout(site: str):
    with pytest.raises(httpx.TimeoutException):
        await coletar_feed({"url": f"{site}/trava.xml", "timeout": 0.3}, ctx())


@pytest.mark.parametrize("payload", [{"url": None}, {"max_itens": 0}, {"max_resumo": 2.5}, {"headers": "x"}])
async def test_bad_options_fail_permanently(site: str, payload: dict):
    with pytest.raises(PermanentFailure):
        await coletar_feed({"url": f"{site}/rss.xml", **payload}, ctx())


@pytest.mark.parametrize(
    ("raw", "iso"),
    [
        ("Tue, 10 Jun 2003 04:00:00 GMT", "2003-06-10T04:00:00+00:00"),
        ("Tue, 10 Jun 2003 04:00:00 EST", "2003-06-10T04:00:00-05:00"),
        ("2003-12-13T18:30:02Z", "2003-12-13T18:30:02+00:00"),
        ("2003-12-13T18:30:02.25+01:00", "2003-12-13T18:30:02.250000+01:00"),
        ("2003-12-13", "2003-12-13"),
        ("amanhã", "amanhã"),
        ("", None),
        (None, None),
    ],
)
def test_feed_dates_become_iso_8601_when_they_parse(raw: str | None, iso: str | None):
    assert data_iso(raw) == iso
