"""The http escavador against real HTTP servers on loopback."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from escavadores.http import coletar_pagina
from orquestrador import Contexto, PermanentFailure, Retry

PAGE = """<!doctype html><html><head>
<title> Preços &amp; Ofertas </title>
<meta name="description" content="Ofertas da semana">
<script>var hidden = "not text";</script></head>
<body><h1>Ofertas</h1><h2>Frutas <em>frescas</em></h2>
<a href="/produtos/1">um</a> <a href="produtos/2#topo">dois</a>
<a href="https://outro.example/x">fora</a> <a href="mailto:a@b.c">mail</a>
<a href="/produtos/1">repetido</a><p>Banana, maçã e uva.</p></body></html>"""


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/loja/":
            self._send(200, PAGE, "text/html; charset=utf-8")
        elif self.path == "/velho":
            self.send_response(301)
            self.send_header("Location", "/loja/")
            self.end_headers()
        elif self.path == "/ocupado":
            self.send_response(429)
            self.send_header("Retry-After", "7")
            self.end_headers()
        elif self.path == "/quebrado":
            self._send(503, "down", "text/plain")
        elif self.path == "/latin1":
            body = "<html><head><title>Açúcar</title></head></html>".encode("latin-1")
            self._send_bytes(200, body, "text/html; charset=iso-8859-1")
        elif self.path == "/grande":
            self._send(200, "<html><body>" + "x" * 300_000 + "</body></html>", "text/html")
        else:
            self._send(404, "<html><head><title>Não encontrado</title></head></html>", "text/html")

    def _send(self, status: int, text: str, content_type: str) -> None:
        self._send_bytes(status, text.encode(), content_type)

    def _send_bytes(self, status: int, body: bytes, content_type: str) -> None:
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
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def ctx() -> Contexto:
    return Contexto("c", "m", 1, "http", logging.LoggerAdapter(logging.getLogger("t"), {}))


async def test_extracts_title_description_headings_and_absolute_links(site: str):
    result = await coletar_pagina({"url": f"{site}/velho"}, ctx())
    assert result["status"] == 200
    assert result["url_final"] == f"{site}/loja/"
    assert result["titulo"] == "Preços & Ofertas"
    assert result["descricao"] == "Ofertas da semana"
    assert result["headings"] == [
        {"nivel": "h1", "texto": "Ofertas"},
        {"nivel": "h2", "texto": "Frutas frescas"},
    ]
    assert result["links"] == [f"{site}/produtos/1", f"{site}/loja/produtos/2", "https://outro.example/x"]
    assert "not text" not in str(result)
    assert result["tamanho_texto"] > len("Banana, maçã e uva.")


async def test_a_404_is_an_observation_not_a_failure(site: str):
    result = await coletar_pagina({"url": f"{site}/sumiu"}, ctx())
    assert result["status"] == 404
    assert result["titulo"] == "Não encontrado"


async def test_charset_from_the_content_type_is_honoured(site: str):
    assert (await coletar_pagina({"url": f"{site}/latin1"}, ctx()))["titulo"] == "Açúcar"


async def test_429_asks_for_a_retry_after_the_servers_delay(site: str):
    with pytest.raises(Retry) as info:
        await coletar_pagina({"url": f"{site}/ocupado"}, ctx())
    assert info.value.delay == 7


async def test_5xx_asks_for_a_retry(site: str):
    with pytest.raises(Retry, match="503"):
        await coletar_pagina({"url": f"{site}/quebrado"}, ctx())


async def test_max_bytes_truncates_big_pages(site: str):
    result = await coletar_pagina({"url": f"{site}/grande", "max_bytes": 10_000}, ctx())
    assert result["truncado"] is True
    assert result["bytes"] == 10_000


@pytest.mark.parametrize("url", [None, "ftp://127.0.0.1/x", "not a url", "http://"])
async def test_bad_urls_fail_permanently(url: object):
    with pytest.raises(PermanentFailure):
        await coletar_pagina({"url": url}, ctx())


async def test_a_closed_port_is_an_ordinary_error_that_gets_retried():
    import httpx

    with pytest.raises(httpx.ConnectError):
        await coletar_pagina({"url": "http://127.0.0.1:1/"}, ctx())
