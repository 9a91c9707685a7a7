"""A crawl from end to end: sitemap → pages with selectors → salvar → a pandas DataFrame.

``python examples/crawl_loja.py [--broker URL]`` (default: the embedded NATS server).

It serves a small shop on 127.0.0.1 — a sitemap, three product pages, and an offers page whose
products only appear once its JavaScript has fetched them — and starts its own workers:
``orq worker escavador sitemap http navegador`` and ``orq worker executor salvar``. Then:

1. ``sitemap`` lists the shop's pages;
2. each page goes to ``http`` with field rules (``seletores``); the offers page, which needs
   JavaScript, goes to ``navegador`` with the same rules and waits for the products;
3. the fields of every page are appended to a Parquet dataset by ``salvar``;
4. ``executores.salvar.ler`` reads the dataset back as a DataFrame.

The navegador needs Playwright (``pip install "orquestrador[navegador]"``) and Chromium
(``apt-get install chromium``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd

from orquestrador import Orquestrador
from orquestrador.brokers import resolve_url

ROOT = Path(__file__).resolve().parent.parent

PRODUTOS = {
    "cafe": ("Café especial 250 g", "R$ 34,90", "CAF-250"),
    "mel": ("Mel de laranjeira 500 g", "R$ 29,00", "MEL-500"),
    "queijo": ("Queijo canastra 1 kg", "R$ 89,50", "QJO-1K"),
}
OFERTAS = [
    {"nome": "Doce de leite 400 g", "preco": "R$ 12,00"},
    {"nome": "Goiabada 300 g", "preco": "R$ 9,90"},
]

# One set of rules for every page: what is not on a page comes back as None / [].
SELETORES: dict[str, Any] = {
    "nome": "h1",
    "preco": ".preco::text",
    "sku": {"xpath": "//*[@itemprop='sku']/@content"},
    "ofertas": {"css": ".oferta .nome", "lista": True},
}


def _produto(nome: str, preco: str, sku: str) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{nome} — Empório</title>"
            f"<meta itemprop='sku' content='{sku}'></head><body><h1>{nome}</h1>"
            f"<p>Preço: <span class='preco'>{preco}</span></p></body></html>")  # fmt: skip


OFERTAS_HTML = """<!doctype html><html><head><meta charset="utf-8"><title>Ofertas — Empório</title></head>
<body><h1>Ofertas da semana</h1><div id="ofertas">carregando…</div>
<script>
fetch('/api/ofertas.json').then(r => r.json()).then(itens => {
  document.getElementById('ofertas').innerHTML = itens.map(o =>
    `<div class="oferta"><span class="nome">${o.nome}</span> <span class="preco">${o.preco}</span></div>`
  ).join('');
});
</script></body></html>"""


def paginas(base: str) -> dict[str, tuple[str, str]]:
    """The shop: path -> (content type, body)."""
    import json

    locs = [f"{base}/produto/{p}" for p in PRODUTOS] + [f"{base}/ofertas"]
    sitemap = "".join(f"<url><loc>{loc}</loc></url>" for loc in locs)
    docs = {
        "/robots.txt": ("text/plain", f"User-agent: *\nDisallow: /carrinho\nSitemap: {base}/sitemap.xml\n"),
        "/sitemap.xml": ("application/xml",
                         f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{sitemap}</urlset>'),
        "/ofertas": ("text/html; charset=utf-8", OFERTAS_HTML),
        "/api/ofertas.json": ("application/json", json.dumps(OFERTAS)),
    }  # fmt: skip
    for slug, (nome, preco, sku) in PRODUTOS.items():
        docs[f"/produto/{slug}"] = ("text/html; charset=utf-8", _produto(nome, preco, sku))
    return docs


@contextmanager
def loja() -> Iterator[str]:
    """The shop on a free loopback port, for as long as the block runs."""
    docs: dict[str, tuple[str, str]] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            content_type, body = docs.get(self.path, ("text/plain", "not found"))
            data = body.encode()
            self.send_response(200 if self.path in docs else 404)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    docs.update(paginas(base))
    threading.Thread(target=server.serve_forever, args=(0.1,), daemon=True).start()
    try:
        yield base
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def workers(url: str, dataset_dir: Path) -> Iterator[None]:
    """The escavadores and salvar in worker processes of their own, stopped when the block ends."""
    env = {**os.environ, "ORQ_BROKER_URL": url, "ORQ_DATASET_DIR": str(dataset_dir)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    comandos = [["escavador", "sitemap", "http", "navegador"], ["executor", "salvar"]]
    procs = [
        subprocess.Popen([sys.executable, "-m", "orquestrador.cli", "worker", *c, "--concurrency", "4"],
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for c in comandos
    ]  # fmt: skip
    try:
        yield
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)


def crawl(url: str, base: str, dataset_dir: Path, home: Path) -> pd.DataFrame:
    """Sitemap → pages → salvar → DataFrame, through the broker at ``url``."""
    from executores.salvar import ler

    with Orquestrador(url, responder_para=f"crawl_loja_{os.getpid()}", home=home) as orq:
        mapa = orq.iniciar_coleta("sitemap", {"url": f"{base}/sitemap.xml"}).wait(120)
        assert mapa.status == "ok" and mapa.result is not None, mapa.erro
        # Pages that need JavaScript go to the browser, with the same rules.
        precisa_js = [c for c in mapa.result["coletas"] if c["url"].endswith("/ofertas")]
        estaticas = [c for c in mapa.result["coletas"] if c not in precisa_js]
        lotes = [
            orq.iniciar_coletas("http", [{**c, "seletores": SELETORES} for c in estaticas], progress=False),
            orq.iniciar_coletas("navegador", [{**c, "seletores": SELETORES, "esperar": ".oferta"}
                                              for c in precisa_js], progress=False),
        ]  # fmt: skip
        registros = []
        for lote in lotes:
            for job in lote.wait(180):
                assert job.status == "ok" and job.result is not None, (job.alvo, job.erro)
                registros.append({"url": job.result["url_final"], "via": job.alvo, **job.result["campos"]})
        salvo = orq.iniciar_execucao("salvar", {"registros": registros, "alvo": "loja", "dataset": "crawl"})
        salvo = salvo.wait(120)
        assert salvo.status == "ok", salvo.erro
    return ler(dataset_dir, dataset="crawl")


def main(broker: str | None = None, workdir: Path | None = None) -> pd.DataFrame:
    """Run the whole crawl against ``broker`` (default: the embedded NATS server)."""
    url = resolve_url(broker)
    work = workdir or Path(tempfile.mkdtemp(prefix="crawl-loja-"))
    dataset_dir = work / "dataset"
    with loja() as base, workers(url, dataset_dir):
        time.sleep(0.5)  # the workers connect; jobs published earlier would wait for them anyway
        return crawl(url, base, dataset_dir, work / "home")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--broker", default=None, help="broker URL (default: the embedded NATS server)")
    frame = main(parser.parse_args().broker)
    with pd.option_context("display.width", 160, "display.max_colwidth", 60):
        print(frame[["via", "nome", "preco", "sku", "ofertas"]].to_string())
