"""Built-in escavadores end to end: real worker processes on a real NATS server, a real web site.

A ``sitemap`` coleta goes through the broker to an ``orq worker escavador sitemap`` process (found
through its entry point), and its ``coletas`` fan out, unchanged, to an ``http`` worker.
"""

from __future__ import annotations

import gzip
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from orquestrador import Orquestrador
from tests.workers import start_worker

NS = "http://www.sitemaps.org/schemas/sitemap/0.9"


def site_documents(base: str) -> dict[str, tuple[str, bytes]]:
    pages = [f"{base}/produto/{i}" for i in range(1, 6)]
    urls = "".join(
        f"<url><loc>{p}</loc><lastmod>2024-05-0{i}</lastmod></url>" for i, p in enumerate(pages, 1)
    )
    docs: dict[str, tuple[str, bytes]] = {
        "/sitemap_index.xml": (
            "application/xml",
            f'<sitemapindex xmlns="{NS}"><sitemap><loc>{base}/produtos.xml.gz</loc></sitemap>'
            f"<sitemap><loc>{base}/institucional.xml</loc></sitemap></sitemapindex>".encode(),
        ),
        "/produtos.xml.gz": (
            "application/gzip",
            gzip.compress(f'<urlset xmlns="{NS}">{urls}</urlset>'.encode()),
        ),
        "/institucional.xml": (
            "application/xml",
            f'<urlset xmlns="{NS}"><url><loc>{base}/sobre</loc></url></urlset>'.encode(),
        ),
        "/quebrado.xml": ("application/xml", f'<urlset xmlns="{NS}"><url><loc>'.encode()),
        "/sobre": ("text/html", b"<html><head><title>Sobre a loja</title></head></html>"),
        "/robots.txt": ("text/plain", b"User-agent: *\nDisallow: /proibido\n"),
        "/proibido": ("text/html", b"<html><head><title>Nao</title></head></html>"),
    }
    for i in range(1, 6):
        docs[f"/produto/{i}"] = (
            "text/html",
            f"<html><head><title>Produto {i}</title></head></html>".encode(),
        )
    return docs


class Handler(BaseHTTPRequestHandler):
    docs: ClassVar[dict[str, tuple[str, bytes]]] = {}

    def do_GET(self) -> None:
        if self.path == "/para-ftp":
            self.send_response(302)
            self.send_header("Location", "ftp://127.0.0.1/arquivo")
            self.end_headers()
            return
        content_type, body = self.docs.get(self.path, ("text/plain", b"not found"))
        self.send_response(200 if self.path in self.docs else 404)
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
    Handler.docs = site_documents(base)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield base
    server.shutdown()


@pytest.mark.nats
def test_a_sitemap_coleta_through_the_broker_fans_out_to_http_workers(nats_url: str, site: str):
    suffix = uuid.uuid4().hex[:8]
    sitemap_worker = start_worker(nats_url, "sitemap", suffix, builtin=True)
    http_worker = start_worker(nats_url, "http", suffix, builtin=True)
    try:
        with Orquestrador(nats_url, responder_para=f"res_builtins_{suffix}") as orq:
            job = orq.iniciar_coleta("sitemap", {"url": f"{site}/sitemap_index.xml"}).wait(60)
            assert job.status == "ok", (job.erro, sitemap_worker.output()[-3000:])
            result = job.result
            assert result is not None
            assert result["sitemaps"] == [
                f"{site}/sitemap_index.xml",
                f"{site}/produtos.xml.gz",
                f"{site}/institucional.xml",
            ]
            assert result["total"] == 6
            assert result["urls"][0] == {"loc": f"{site}/produto/1", "lastmod": "2024-05-01"}
            assert result["truncado"] is False

            lote = orq.iniciar_coletas("http", result["coletas"], progress=False).wait(60)
            titulos = sorted(j.result["titulo"] for j in lote if j.result is not None)
            assert titulos == [f"Produto {i}" for i in range(1, 6)] + ["Sobre a loja"], lote.contagem()

            bad = orq.iniciar_coleta("sitemap", {"url": f"{site}/quebrado.xml"}).wait(60)
            assert bad.status in ("erro", "dead-lettered")
            assert bad.tentativa == 1  # a PermanentFailure is not retried
            assert bad.erro is not None and "not well-formed XML" in bad.erro["mensagem"]

            ftp = orq.iniciar_coleta("http", {"url": f"{site}/para-ftp"}).wait(60)
            assert (ftp.status, ftp.tentativa) == ("dead-lettered", 1)  # never retried
            assert ftp.erro is not None and "only http(s) URLs are fetched" in ftp.erro["mensagem"]
    finally:
        codes = (sitemap_worker.stop(), http_worker.stop())
    assert codes == (0, 0), sitemap_worker.output()[-3000:] + http_worker.output()[-3000:]


@pytest.mark.nats
def test_a_worker_refusing_loopback_dead_letters_the_coleta_at_once(nats_url: str, site: str):
    suffix = uuid.uuid4().hex[:8]
    worker = start_worker(nats_url, "http", suffix, builtin=True, extra=["--fetch-deny", "loopback"])
    try:
        with Orquestrador(nats_url, responder_para=f"res_deny_{suffix}") as orq:
            job = orq.iniciar_coleta("http", {"url": f"{site}/sobre"}).wait(60)
    finally:
        assert worker.stop() == 0, worker.output()[-3000:]
    assert (job.status, job.tentativa) == ("dead-lettered", 1)
    assert job.erro is not None and job.erro["tipo"] == "EnderecoRecusado"
    assert "ORQ_FETCH_DENY='loopback'" in job.erro["mensagem"]


@pytest.mark.nats
def test_selectors_on_a_worker_and_what_cannot_succeed_dead_lettered_at_once(nats_url: str, site: str):
    suffix = uuid.uuid4().hex[:8]
    worker = start_worker(nats_url, "http", suffix, builtin=True)
    try:
        with Orquestrador(nats_url, responder_para=f"res_sel_{suffix}") as orq:
            seletores = {"titulo": "title", "nada": {"xpath": "//nav//a/@href", "lista": True}}
            job = orq.iniciar_coleta("http", {"url": f"{site}/sobre", "seletores": seletores}).wait(60)
            malformado = {"url": f"{site}/sobre", "seletores": {"preco": "span[["}}
            bad = orq.iniciar_coleta("http", malformado).wait(60)
            proibido = orq.iniciar_coleta("http", {"url": f"{site}/proibido"}).wait(60)
    finally:
        assert worker.stop() == 0, worker.output()[-3000:]
    assert job.status == "ok", job.erro
    assert job.result is not None and job.result["campos"] == {"titulo": "Sobre a loja", "nada": []}
    assert (bad.status, bad.tentativa) == ("dead-lettered", 1)
    assert bad.erro is not None and "seletores['preco']: invalid CSS" in bad.erro["mensagem"]
    assert (proibido.status, proibido.tentativa) == ("dead-lettered", 1)
    assert proibido.erro is not None and proibido.erro["tipo"] == "RobotsRecusado"
