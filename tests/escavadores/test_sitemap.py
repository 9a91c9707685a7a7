"""The sitemap escavador against real sitemaps (index, gzip, text, hostile XML) served on loopback."""

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

from escavadores.sitemap import coletar_sitemap
from orquestrador import Contexto, PermanentFailure, Retry

NS = "http://www.sitemaps.org/schemas/sitemap/0.9"
RELEASE = threading.Event()


def urlset(*entries: str, ns: str = NS) -> str:
    xmlns = f' xmlns="{ns}"' if ns else ""
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<urlset{xmlns}>{"".join(entries)}</urlset>'


def url(loc: str, lastmod: str | None = None) -> str:
    mod = f"<lastmod>{lastmod}</lastmod>" if lastmod else ""
    return f"<url><loc>{loc}</loc>{mod}</url>"


def index(*locs: str) -> str:
    children = "".join(f"<sitemap><loc>{loc}</loc></sitemap>" for loc in locs)
    return f'<?xml version="1.0"?><sitemapindex xmlns="{NS}">{children}</sitemapindex>'


_LAUGHS = ['<!ENTITY lol0 "lol">'] + [
    f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)
]  # lol9 expands to 10**9 "lol"s
BILLION_LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE lolz [\n' + "\n".join(_LAUGHS) + "\n]>\n"
    f'<urlset xmlns="{NS}"><url><loc>http://x/&lol9;</loc></url></urlset>'
)
XXE = (
    '<?xml version="1.0"?>\n<!DOCTYPE urlset [<!ENTITY segredo SYSTEM "file:///etc/passwd">]>\n'
    f'<urlset xmlns="{NS}"><url><loc>http://x/&segredo;</loc></url></urlset>'
)


def documents(base: str) -> dict[str, tuple[str, bytes, dict[str, str]]]:
    xml = "application/xml"
    docs: dict[str, tuple[str, str | bytes, dict[str, str]]] = {
        "/sitemap.xml": (
            xml,
            urlset(
                url(f"{base}/a", "2024-05-01"),
                f'<url xmlns:image="http://www.google.com/schemas/sitemap-image/1.1"><loc>\n  {base}/b  \n'
                f"</loc><image:image><image:loc>{base}/foto.jpg</image:loc></image:image></url>",
                url("/relativa", "2024-05-02T10:00:00+00:00"),
                url("mailto:x@y.z"),
                url(f"{base}/a"),
            ),
            {},
        ),
        "/index.xml": (xml, index("/filho-1.xml", f"{base}/filho-2.xml.gz", "/index.xml", "/sumiu.xml"), {}),
        "/filho-1.xml": (xml, urlset(url(f"{base}/p/1"), url(f"{base}/p/2")), {}),
        "/filho-2.xml.gz": (
            "application/gzip",
            gzip.compress(urlset(url(f"{base}/p/2"), url(f"{base}/p/3", "2024-01-01")).encode()),
            {},
        ),
        "/transporte.xml": (
            xml,
            gzip.compress(urlset(url(f"{base}/t")).encode()),
            {"Content-Encoding": "gzip"},
        ),
        "/sem-ns.xml": (xml, urlset(url(f"{base}/velho"), ns=""), {}),
        "/google.xml": (xml, urlset(url(f"{base}/g"), ns="http://www.google.com/schemas/sitemap/0.84"), {}),
        "/grande.xml": (xml, urlset(*(url(f"{base}/n/{i}") for i in range(100))), {}),
        "/indice-grande.xml": (
            xml,
            index(*(f"/filho-{i}.xml" for i in (1, 1, 1)), *(f"/g{i}.xml" for i in range(10))),
            {},
        ),
        "/texto.txt": ("text/plain", f"{base}/x\n\n{base}/y\r\n", {}),
        "/texto-ruim.txt": ("text/plain", f"{base}/x\nisto não é uma URL\n", {}),
        "/malformado.xml": (xml, f'<urlset xmlns="{NS}"><url><loc>{base}/a</url>', {}),
        "/bomba.xml": (xml, BILLION_LAUGHS, {}),
        "/xxe.xml": (xml, XXE, {}),
        "/html.xml": ("text/html", "<html><body><p>oi</p></body></html>", {}),
        "/vazio.xml": (xml, "", {}),
        "/gz-bomba.xml.gz": ("application/gzip", gzip.compress(b" " * 2_000_000), {}),
        "/corrompido.xml.gz": ("application/gzip", b"\x1f\x8b\x08\x00" + b"lixo" * 20, {}),
        "/indice-filho-quebrado.xml": (xml, index("/filho-1.xml", "/quebrado.xml"), {}),
        "/indice-filho-malformado.xml": (xml, index("/malformado.xml", "/filho-1.xml"), {}),
    }
    for i in range(10):
        docs[f"/g{i}.xml"] = (xml, urlset(url(f"{base}/g/{i}")), {})
    return {k: (ct, body.encode() if isinstance(body, str) else body, h) for k, (ct, body, h) in docs.items()}


class Handler(BaseHTTPRequestHandler):
    docs: ClassVar[dict[str, tuple[str, bytes, dict[str, str]]]] = {}

    def do_GET(self) -> None:
        if self.path == "/quebrado.xml":
            self._send(503, "text/plain", b"down", {"Retry-After": "5"})
        elif self.path == "/trava.xml":
            RELEASE.wait(10)
            self._send(200, "application/xml", urlset().encode(), {})
        elif self.path in self.docs:
            self._send(200, *self.docs[self.path])
        else:
            self._send(404, "text/plain", b"nope", {})

    def _send(self, status: int, content_type: str, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    Handler.docs = documents(base)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield base
    RELEASE.set()
    server.shutdown()


def ctx() -> Contexto:
    return Contexto("c", "m", 1, "sitemap", logging.LoggerAdapter(logging.getLogger("t"), {}))


async def test_urlset_in_the_sitemap_namespace(site: str):
    result = await coletar_sitemap({"url": f"{site}/sitemap.xml"}, ctx())
    assert result["urls"] == [
        {"loc": f"{site}/a", "lastmod": "2024-05-01"},
        {"loc": f"{site}/b", "lastmod": None},  # whitespace trimmed, <image:loc> not taken
        {"loc": f"{site}/relativa", "lastmod": "2024-05-02T10:00:00+00:00"},
    ]  # mailto: skipped, the repeated /a kept once
    assert result["total"] == 3
    assert result["sitemaps"] == [f"{site}/sitemap.xml"]
    assert result["coletas"] == [{"url": f"{site}/a"}, {"url": f"{site}/b"}, {"url": f"{site}/relativa"}]
    assert result["truncado"] is False
    assert result["erros"] == []


async def test_an_index_is_followed_once_per_child_with_gzip_and_dead_children_reported(site: str):
    result = await coletar_sitemap({"url": f"{site}/index.xml"}, ctx())
    assert [u["loc"] for u in result["urls"]] == [f"{site}/p/1", f"{site}/p/2", f"{site}/p/3"]
    assert result["urls"][2]["lastmod"] == "2024-01-01"
    assert result["sitemaps"] == [f"{site}/index.xml", f"{site}/filho-1.xml", f"{site}/filho-2.xml.gz"]
    assert [e["url"] for e in result["erros"]] == [f"{site}/sumiu.xml"]
    assert "404" in result["erros"][0]["erro"]
    assert result["truncado"] is False


async def test_gzip_content_encoding_is_undone_by_the_client(site: str):
    result = await coletar_sitemap({"url": f"{site}/transporte.xml"}, ctx())
    assert result["coletas"] == [{"url": f"{site}/t"}]


@pytest.mark.parametrize(("path", "loc"), [("/sem-ns.xml", "/velho"), ("/google.xml", "/g")])
async def test_no_namespace_and_the_old_google_namespace(site: str, path: str, loc: str):
    result = await coletar_sitemap({"url": site + path}, ctx())
    assert result["coletas"] == [{"url": site + loc}]


async def test_a_text_sitemap_is_one_url_per_line(site: str):
    result = await coletar_sitemap({"url": f"{site}/texto.txt"}, ctx())
    assert result["urls"] == [{"loc": f"{site}/x", "lastmod": None}, {"loc": f"{site}/y", "lastmod": None}]
    with pytest.raises(PermanentFailure, match="neither XML nor a text sitemap"):
        await coletar_sitemap({"url": f"{site}/texto-ruim.txt"}, ctx())


async def test_max_urls_bounds_the_result(site: str):
    result = await coletar_sitemap({"url": f"{site}/grande.xml", "max_urls": 10}, ctx())
    assert result["total"] == 10
    assert result["coletas"][-1] == {"url": f"{site}/n/9"}
    assert result["truncado"] is True
    exact = await coletar_sitemap({"url": f"{site}/grande.xml", "max_urls": 100}, ctx())
    assert (exact["total"], exact["truncado"]) == (100, False)


async def test_max_urls_stops_walking_an_index(site: str):
    result = await coletar_sitemap({"url": f"{site}/indice-grande.xml", "max_urls": 2}, ctx())
    assert result["sitemaps"] == [f"{site}/indice-grande.xml", f"{site}/filho-1.xml"]
    assert result["truncado"] is True


async def test_max_sitemaps_bounds_the_documents_fetched(site: str):
    result = await coletar_sitemap({"url": f"{site}/indice-grande.xml", "max_sitemaps": 4}, ctx())
    assert len(result["sitemaps"]) == 4  # the index, filho-1 (listed three times, read once), g0, g1
    assert [u["loc"] for u in result["urls"]] == [f"{site}/p/1", f"{site}/p/2", f"{site}/g/0", f"{site}/g/1"]
    assert result["truncado"] is True


async def test_malformed_xml_fails_permanently(site: str):
    with pytest.raises(PermanentFailure, match="not well-formed XML"):
        await coletar_sitemap({"url": f"{site}/malformado.xml"}, ctx())


async def test_a_malformed_child_is_reported_and_the_rest_still_read(site: str):
    result = await coletar_sitemap({"url": f"{site}/indice-filho-malformado.xml"}, ctx())
    assert [u["loc"] for u in result["urls"]] == [f"{site}/p/1", f"{site}/p/2"]
    assert "not well-formed" in result["erros"][0]["erro"]


async def test_billion_laughs_is_refused_not_expanded(site: str):
    started = time.monotonic()
    with pytest.raises(PermanentFailure, match=r"refused as unsafe.*EntitiesForbidden"):
        await coletar_sitemap({"url": f"{site}/bomba.xml"}, ctx())
    assert time.monotonic() - started < 2


async def test_external_entities_are_refused(site: str):
    with pytest.raises(PermanentFailure, match="refused as unsafe"):
        await coletar_sitemap({"url": f"{site}/xxe.xml"}, ctx())


@pytest.mark.parametrize(
    ("path", "match"),
    [
        ("/html.xml", r"not a sitemap \(root element <html>\)"),
        ("/vazio.xml", "empty document"),
        ("/corrompido.xml.gz", "not valid gzip"),
    ],
)
async def test_documents_that_are_not_sitemaps_fail_permanently(site: str, path: str, match: str):
    with pytest.raises(PermanentFailure, match=match):
        await coletar_sitemap({"url": site + path}, ctx())


async def test_a_gzip_bomb_stops_at_max_bytes(site: str):
    with pytest.raises(PermanentFailure, match="inflates to more than max_bytes=100000"):
        await coletar_sitemap({"url": f"{site}/gz-bomba.xml.gz", "max_bytes": 100_000}, ctx())


async def test_404_fails_permanently_naming_the_status(site: str):
    with pytest.raises(PermanentFailure, match="404"):
        await coletar_sitemap({"url": f"{site}/nao-existe.xml"}, ctx())


async def test_5xx_retries_even_from_a_child_sitemap(site: str):
    with pytest.raises(Retry, match="503") as info:
        await coletar_sitemap({"url": f"{site}/quebrado.xml"}, ctx())
    assert info.value.delay == 5
    with pytest.raises(Retry, match="503"):
        await coletar_sitemap({"url": f"{site}/indice-filho-quebrado.xml"}, ctx())


async def test_a_server_that_hangs_raises_httpx_timeout(site: str):
    with pytest.raises(httpx.TimeoutException):
        await coletar_sitemap({"url": f"{site}/trava.xml", "timeout": 0.3}, ctx())


@pytest.mark.parametrize(
    "payload",
    [{"url": "ftp://127.0.0.1/s.xml"}, {"max_urls": 0}, {"max_sitemaps": "10"}, {"timeout": -1}],
)
async def test_bad_options_fail_permanently(site: str, payload: dict):
    with pytest.raises(PermanentFailure):
        await coletar_sitemap({"url": f"{site}/sitemap.xml", **payload}, ctx())
