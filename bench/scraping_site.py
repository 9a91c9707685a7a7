"""A static shop site for the scraping row: ``python -m bench.scraping_site --pages N``.

Pages are generated once, deterministically, and served from memory by a threaded HTTP/1.1
server (keep-alive, Content-Length) in a process of its own, so neither client pays for it:
``/grande/<i>`` are ~260 KiB product listings shaped like a real shop page (inline state and
CSS in the head, a 150-link menu, product cards), ``/pequena/<i>`` ~1 KiB articles, and a
robots.txt that allows everything. It prints ``BENCH_SITE http://127.0.0.1:<port>`` when ready.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PALAVRAS = [
    "preço", "oferta", "banana", "maçã", "uva", "produto", "loja", "entrega", "frete", "grátis",
    "cliente", "avaliação", "estoque", "categoria", "marca", "desconto", "parcelado", "cartão",
    "boleto", "semana", "novidade", "coleção",
]  # fmt: skip


def _frase(r: random.Random, n: int) -> str:
    return " ".join(r.choice(PALAVRAS) for _ in range(n))


def pagina_grande(i: int, kib: int = 260) -> bytes:
    """A product listing of about ``kib`` KiB."""
    r = random.Random(i)
    partes = [
        "<!doctype html><html lang='pt-BR'><head><meta charset='utf-8'>",
        f"<title>Loja — {_frase(r, 4)}</title><meta name='description' content='{_frase(r, 12)}'>",
        "<style>" + "".join(f".c{k}{{color:#{k:06x};margin:0 auto;padding:{k % 9}px}}" for k in range(400)),
        "</style><script>window.__STATE__=" + '{"k":"' + "x" * 20000 + '"};</script></head><body>',
        "<nav><ul>",
        *(f"<li><a href='/categoria/{k}?ref=menu'>{_frase(r, 2)}</a></li>" for k in range(150)),
        f"</ul></nav><main><h1>{_frase(r, 5)}</h1>",
    ]
    tamanho = sum(len(p.encode()) for p in partes)
    k = 0
    while tamanho < kib * 1024 - 1500:
        k += 1
        card = (
            f"<div class='produto c{k % 400}' data-id='{k}'><h2>{_frase(r, 3)}</h2>"
            f"<img src='/img/{i}/{k}.jpg' alt='{_frase(r, 2)}'><span class='preco'>R$ {r.randint(1, 999)},"
            f"{r.randint(0, 99):02d}</span><p>{_frase(r, 40)}</p><a href='/produto/{i}-{k}'>ver</a></div>"
        )
        partes.append(card)
        tamanho += len(card.encode())
    partes.append(f"</main><footer><h3>{_frase(r, 3)}</h3>{_frase(r, 30)}</footer></body></html>")
    return "".join(partes).encode()


def pagina_pequena(i: int) -> bytes:
    """A short article of about 1 KiB."""
    r = random.Random(10_000 + i)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{_frase(r, 4)}</title>"
        f"<meta name='description' content='{_frase(r, 8)}'></head><body><h1>{_frase(r, 5)}</h1>"
        f"<p>{_frase(r, 60)}</p><h2>{_frase(r, 3)}</h2><p>{_frase(r, 30)}</p>"
        + "".join(f"<a href='/pequena/{(i + k) % 1000}'>{_frase(r, 2)}</a> " for k in range(1, 6))
        + "</body></html>"
    ).encode()


def site(paginas: int) -> dict[str, bytes]:
    docs = {"/robots.txt": b"User-agent: *\nDisallow: /carrinho/\n"}
    for i in range(paginas):
        docs[f"/grande/{i}"] = pagina_grande(i)
        docs[f"/pequena/{i}"] = pagina_pequena(i)
    return docs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scraping_site")
    parser.add_argument("--pages", type=int, default=100, help="pages of each size")
    args = parser.parse_args(argv)
    docs = site(args.pages)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            body = docs.get(self.path)
            self.send_response(200 if body is not None else 404)
            body = body if body is not None else b"not found"
            tipo = "text/plain" if self.path == "/robots.txt" or self.path not in docs else "text/html"
            self.send_header("Content-Type", f"{tipo}; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(f"BENCH_SITE http://127.0.0.1:{server.server_address[1]}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
