"""A loopback site for the checks every built-in escavador shares: it serves a valid document for
each of them, redirects where told, drips a body slowly, and records what each request carried.

Two of these on different ports are two origins.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from escavadores.http import coletar_pagina
from escavadores.json_api import coletar_json
from escavadores.rss import coletar_feed
from escavadores.sitemap import coletar_sitemap
from orquestrador import Contexto
from orquestrador.settings import ENV_FETCH_DENY

PLUGINS = {"http": coletar_pagina, "json_api": coletar_json, "sitemap": coletar_sitemap, "rss": coletar_feed}

DOCS: dict[str, tuple[str, bytes]] = {
    "http": ("text/html", b"<html><head><title>ok</title></head><body>ok</body></html>"),
    "json_api": ("application/json", json.dumps([{"id": 1}]).encode()),
    "sitemap": (
        "application/xml",
        b'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        b"<url><loc>http://127.0.0.1/a</loc></url></urlset>",
    ),
    "rss": (
        "application/rss+xml",
        b"<rss><channel><title>f</title><item><title>i</title><link>http://127.0.0.1/a</link></item>"
        b"</channel></rss>",
    ),
}


@dataclass
class Site:
    """One server: its base URL and every request it received, as (path, headers)."""

    url: str
    pedidos: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    robots: list[dict[str, str]] = field(default_factory=list)  # robots.txt asked, kept apart

    def headers_em(self, prefixo: str) -> list[dict[str, str]]:
        return [h for path, h in self.pedidos if path.startswith(prefixo)]


def _handler(site: Site) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            headers = {k.lower(): v for k, v in self.headers.items()}
            if self.path == "/robots.txt":
                site.robots.append(headers)
                self.send_error(404)  # no rules: everything allowed
                return
            site.pedidos.append((self.path, headers))
            parts = urlsplit(self.path)
            q = {k: v[0] for k, v in parse_qs(parts.query).items()}
            rota = parts.path.strip("/").split("/")
            if rota[0] == "doc":
                self._doc(rota[1])
            elif rota[0] == "redir":
                self._redirect(q["para"])
            elif rota[0] == "laco":
                self._redirect("/laco")
            elif rota[0] == "vira":  # a later hop meets a stricter policy than the first one
                os.environ[ENV_FETCH_DENY] = q["nega"]
                self._redirect(q["para"])
            elif rota[0] == "cookie":
                self.send_response(302)
                self.send_header("Set-Cookie", "sessao=segredo; Path=/")
                self.send_header("Location", f"/doc/{rota[1]}")
                self.end_headers()
            elif rota[0] == "grande":
                self._send("application/json", json.dumps([{"x": "y" * 100}] * 50).encode())
            elif rota[0] == "gota":
                self._gota(DOCS[rota[1]])
            else:
                self.send_error(404)

        def _doc(self, tipo: str) -> None:
            content_type, body = DOCS[tipo]
            self._send(content_type, body)

        def _redirect(self, para: str) -> None:
            self.send_response(302)
            self.send_header("Location", para)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _gota(self, doc: tuple[str, bytes]) -> None:
            """One byte every 0.3 s: each read is quick, the whole answer takes ~30 s."""
            body = doc[1] + b" " * max(0, 100 - len(doc[1]))
            self.send_response(200)
            self.send_header("Content-Type", doc[0])
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                for i in range(len(body)):
                    self.wfile.write(body[i : i + 1])
                    self.wfile.flush()
                    time.sleep(0.3)
            except OSError:
                return  # the client gave up

        def _send(self, content_type: str, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return None

    return Handler


@contextmanager
def servir() -> Iterator[Site]:
    site = Site("")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(site))
    server.daemon_threads = True
    site.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()


Rota = tuple[str, bytes] | tuple[str, bytes, dict[str, str]]


@contextmanager
def servir_paginas(
    paginas: dict[str, Rota], pedidos: list[tuple[str, str]] | None = None, host: str = "127.0.0.1"
) -> Iterator[str]:
    """A loopback site serving fixed documents: path -> (content type, body[, extra headers]).

    Other paths are 404; a content type of ``"status:503"`` answers that status. Yields the base
    URL; ``paginas`` may change while it serves; ``pedidos`` receives (path, user agent) of each.
    """

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if pedidos is not None:
                pedidos.append((self.path, self.headers.get("user-agent", "")))
            rota = paginas.get(self.path)
            if rota and rota[0].startswith("status:"):
                self.send_error(int(rota[0][7:]))
                return
            content_type, body, extra = (*rota, {})[:3] if rota else ("text/plain", b"not found", {})
            self.send_response(200 if rota else 404)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer((host, 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def contexto(alvo: str = "http") -> Contexto:
    """A job context for calling a plugin directly, as a worker would."""
    return Contexto("c", "m", 1, alvo, logging.LoggerAdapter(logging.getLogger("t"), {}))
