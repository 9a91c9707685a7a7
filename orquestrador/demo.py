"""``orq demo``: the whole toolkit in one command, on a fresh machine.

It serves the HTML pages shipped in ``demo_site/`` on a loopback HTTP server, starts real
escavador worker processes, launches collection jobs through the broker (the embedded NATS
server unless a URL is given), waits for every result and prints them. Nothing is canned: the
workers fetch and parse the pages over HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from orquestrador.brokers import connect, resolve_url
from orquestrador.errors import JobTimeout
from orquestrador.facade import Orquestrador
from orquestrador.settings import ENV_BROKER_URL, redact_url

SITE = Path(__file__).parent / "demo_site"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return None


@contextlib.contextmanager
def serve_site(directory: Path = SITE) -> Iterator[str]:
    """Serve ``directory`` on a free loopback port; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="demo-site", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def start_workers(url: str, count: int, concurrency: int = 8) -> list[subprocess.Popen[bytes]]:
    command = [sys.executable, "-m", "orquestrador.cli", "worker", "escavador", "http",
               "--concurrency", str(concurrency), "--log-level", "WARNING"]  # fmt: skip
    env = {**os.environ, ENV_BROKER_URL: url}  # passed by environment: never on a command line
    return [subprocess.Popen(command, env=env) for _ in range(count)]


def stop_workers(procs: list[subprocess.Popen[bytes]], timeout: float = 15.0) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()  # SIGTERM: the worker drains and exits
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_demo(
    jobs: int = 20,
    workers: int = 2,
    timeout: float = 120.0,
    broker: str | None = None,
    console: Console | None = None,
) -> bool:
    """Run the demo; True only if every job came back ok."""
    console = console or Console()
    url = resolve_url(broker)
    console.print(f"broker   {redact_url(url)}")
    pages = sorted(p.name for p in SITE.glob("*.html"))
    started = time.monotonic()
    with serve_site() as site:
        console.print(f"site     {site}/ ({len(pages)} pages)")
        procs = start_workers(url, workers)
        console.print(f"workers  {workers} escavador 'http' processes (pids {[p.pid for p in procs]})")
        try:
            with Orquestrador(url, responder_para=f"orq_demo_{uuid.uuid4().hex[:10]}") as orq:
                payloads = [{"url": f"{site}/{pages[i % len(pages)]}"} for i in range(jobs)]
                lote = orq.iniciar_coletas("http", payloads)
                console.print(f"launched {len(lote)} coletas; waiting for resultado_coleta …")
                try:
                    lote.wait(timeout)
                except JobTimeout as exc:
                    console.print(f"[red]{exc}[/]")
                frame = lote.resultados()
            _drop_queue(url, orq.responder_para)
        finally:
            stop_workers(procs)
    elapsed = time.monotonic() - started
    console.print(_table(frame))
    ok = int((frame["status"] == "ok").sum())
    rate = ok / elapsed if elapsed > 0 else 0.0
    colour = "green" if ok == jobs else "red"
    console.print(
        f"[{colour}]{ok}/{jobs} coletas ok[/] in {elapsed:.1f}s ({rate:.1f} jobs/s) via {redact_url(url)}"
    )
    return ok == jobs


def _drop_queue(url: str, queue: str) -> None:
    """The demo's private results queue is not needed once its results are stored."""

    async def drop() -> None:
        broker = await connect(url)
        try:
            await broker.delete(queue)
        finally:
            await broker.close()

    with contextlib.suppress(Exception):  # a leftover empty queue is no reason to fail the demo
        asyncio.run(asyncio.wait_for(drop(), 10))


def _table(frame: pd.DataFrame) -> Table:
    table = Table(title="resultado_coleta")
    table.add_column("correlation_id", no_wrap=True)
    for column in ("alvo", "status", "duration", "título", "links"):
        table.add_column(column, overflow="fold")
    for row in frame.to_dict("records"):
        duration = row.get("duracao")
        millis = "-" if pd.isna(duration) else f"{duration.total_seconds() * 1000:.0f} ms"
        status = str(row.get("status"))
        links = row.get("resultado.links")
        table.add_row(
            row["correlation_id"],
            str(row.get("alvo")),
            f"[{'green' if status == 'ok' else 'red'}]{status}[/]",
            millis,
            str(row.get("resultado.titulo") or "-"),
            str(len(links)) if isinstance(links, list) else "-",
        )
    return table
