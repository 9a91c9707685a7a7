"""Notebook 01 served by Voila and opened in headless Chromium: what a user's browser shows.

Why: nbclient proves the cells run; only a browser proves the widgets render from their comm
messages, that the dashboard's counts reach the jobs launched, and that nothing on the page is
fetched from outside the machine. A screenshot is kept for the eye (tests/notebook/artifacts/).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import pytest

from orquestrador import detached
from orquestrador.brokers import embedded
from orquestrador.demo import SITE
from tests.conftest import unreachable
from tests.servers.process import free_port

CHROMIUM = Path("/usr/bin/chromium")
NOTEBOOK = Path(__file__).parent.parent.parent / "notebooks" / "01_lancar_coletas.ipynb"
ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
MARKER = "ORQ_BROWSER_TEST"  # in the environment of every process this test starts, to find them


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"voila exited with {proc.returncode} before serving")
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"voila did not listen on {port} within {timeout}s")


def processes_marked(marker: str) -> list[int]:
    """Pids of live processes carrying ``MARKER=marker``: voila, its kernel, workers, nats-server."""
    needle = f"{MARKER}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:  # gone, or not ours to read
            continue
    return found


def without_last_cell(tmp_path: Path) -> Path:
    """Notebook 01 minus its clean-up cell: its workers stay up for clicks in the browser."""
    book = json.loads(NOTEBOOK.read_text())
    assert "embedded.stop" in "".join(book["cells"][-1]["source"]), "the last cell is the clean-up"
    book["cells"] = book["cells"][:-1]
    path = tmp_path / "01_interactive.ipynb"
    path.write_text(json.dumps(book))
    return path


def stop_marked(marker: str) -> list[int]:
    """SIGTERM (workers drain), then SIGKILL, whatever of ours still runs; returns what there was."""
    left = processes_marked(marker)
    for pid in left:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while processes_marked(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in processes_marked(marker):
        os.kill(pid, signal.SIGKILL)
    return left


@dataclass
class Served:
    url: str
    scratch: Path  # TMPDIR of the kernel
    notebook: Path  # the notebook served, or the directory of notebooks ("restart")
    home: Path  # ORQ_HOME of the kernels: the store, the embedded broker, detached processes
    marker: str

    def render(self, name: str) -> str:
        """The page of notebook ``name`` of the served directory."""
        return f"{self.url}voila/render/{name}"


@pytest.fixture
def voila(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    """Voila serving notebook 01 on loopback; afterwards every process it started is gone.

    ``request.param`` "whole" serves the notebook as is (it stops all it started: checked),
    "interactive" without its last cell, "restart" a directory the test writes notebooks to;
    the fixture stops the workers, demo site and broker those left.
    """
    if not shutil.which("voila"):
        unreachable("voila (pip install -e '.[dev]')")
    whole = request.param == "whole"
    if request.param == "restart":
        notebook = tmp_path / "books"
        notebook.mkdir()
    else:
        notebook = NOTEBOOK if whole else without_last_cell(tmp_path)
    home = tmp_path / "orq-home"
    marker = uuid.uuid4().hex
    port = free_port()
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {
        **os.environ,
        MARKER: marker,
        "TMPDIR": str(scratch),
        "ORQ_HOME": str(home),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter-runtime"),
        "JUPYTER_DATA_DIR": str(tmp_path / "jupyter-data"),  # the notebook-signing key goes here
        "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),
    }
    env.pop("ORQ_BROKER_URL", None)
    log = (tmp_path / "voila.log").open("wb")
    command = [
        "voila", str(notebook), f"--port={port}", "--no-browser", "--Voila.ip=127.0.0.1",
        "--show_tracebacks=True", "--VoilaConfiguration.http_keep_alive_timeout=5",
    ]  # fmt: skip
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_port(port, proc, 60)
        yield Served(f"http://127.0.0.1:{port}/", scratch, notebook, home, marker)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # voila shuts its kernel down on SIGTERM
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()
        left_detached = detached.stop(home)  # left by the interactive run, or a failed one
        embedded.stop(home)
        assert not (whole and left_detached), f"notebook 01 left {left_detached} running"
        deadline = time.monotonic() + (20 if whole else 2)
        while processes_marked(marker) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = stop_marked(marker)  # the kernel or a worker that outlived voila: ours, by pid
        assert not (whole and left), f"processes left running after notebook 01 and voila stopped: {left}"


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def open_page(pw: Any, tmp_path: Path, outside: list[str]) -> tuple[Any, Any]:
    """Headless Debian Chromium with a fresh profile; requests off the machine are refused."""
    if not CHROMIUM.exists():
        unreachable(f"chromium at {CHROMIUM} (apt-get install chromium)")

    def loopback_only(route: Any) -> None:
        if urlsplit(route.request.url).hostname in ("127.0.0.1", "localhost"):
            route.continue_()
        else:  # Voila links a CDN stylesheet: this test sends nothing off the machine
            outside.append(route.request.url)
            route.abort()

    browser = pw.chromium.launch_persistent_context(
        tmp_path / "chromium-profile",
        executable_path=str(CHROMIUM),
        args=CHROMIUM_ARGS,
        viewport={"width": 1280, "height": 2200},
    )
    page = browser.new_page()
    page.route("**/*", loopback_only)
    return browser, page


def keep_screenshots(*paths: Path) -> None:
    for path in paths:
        width, height = png_size(path)
        assert width >= 600 and height >= 150 and path.stat().st_size > 10_000, (path, width, height)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / ".gitignore").write_text("*\n")
    for path in paths:
        shutil.copy(path, ARTIFACTS / path.name)
    print("screenshots:", ", ".join(str(ARTIFACTS / p.name) for p in paths))


def playwright() -> Any:
    try:
        from playwright import sync_api
    except ImportError:
        unreachable("the playwright package (pip install -e '.[dev]')")
    return sync_api


def reached(board: Any, text: str, voila: Served, timeout: float = 90.0) -> None:
    """Wait for ``text`` in the dashboard; on failure say what it showed and what Voila logged."""
    from playwright.sync_api import expect

    try:
        expect(board).to_contain_text(text, timeout=timeout * 1000)
    except AssertionError as exc:
        shown = board.inner_text() if board.count() else "(no dashboard on the page)"
        log = (voila.scratch.parent / "voila.log").read_text(errors="replace")[-3000:]
        raise AssertionError(f"{text!r} not shown: {exc}\ndashboard: {shown}\nvoila log: {log}") from None


LAUNCHED = 1 + 5 * len(list(SITE.glob("*.html")))  # notebook 01: one job, then every page five times


@pytest.mark.nats
@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("voila", ["whole"], indirect=True)
def test_notebook_01_dashboard_in_a_real_browser(voila: Served, tmp_path: Path) -> None:
    sync_api = playwright()
    expect = sync_api.expect
    outside: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser, page = open_page(pw, tmp_path, outside)
        try:
            # Voila answers once the whole notebook ran: its last cell stops workers and broker.
            page.goto(voila.url, timeout=150_000, wait_until="load")
            board = page.locator(".orq-painel")
            expect(board).to_be_visible(timeout=60_000)
            reached(board, f"{LAUNCHED}/{LAUNCHED} done", voila)
            expect(board).to_contain_text(f"ok {LAUNCHED}", timeout=10_000)
            expect(board.locator(".widget-tab")).to_contain_text("launch", timeout=10_000)
            batch = f"{LAUNCHED - 1}/{LAUNCHED - 1} done"  # the Lote widget of the batch cell
            expect(page.locator(".widget-html", has_text=batch)).to_have_count(1, timeout=30_000)
            lote_view = page.locator(".orq-lote")
            # Finished: its average rate, not the 0.0 jobs/s of an empty last 10 s.
            expect(lote_view).to_contain_text(re.compile(r"avg \d+\.\d jobs/s"))
            assert not re.search(r"(?<![\d.])0\.0 jobs/s", lote_view.inner_text())  # 30.0 is fine
            # Its id, and the line that reopens it after a restart; the cell that does shows it all.
            reopen = lote_view.locator(".orq-reopen").inner_text()
            assert re.fullmatch(r'orq\.lote\("[0-9a-f-]{36}"\)', reopen), reopen
            expect(page.get_by_text(f"({LAUNCHED - 1}, {{'ok': {LAUNCHED - 1}}})")).to_be_visible()
            # The last cell closed the orchestrator: its dashboard says so, with the final counts.
            expect(board).to_contain_text("this Orquestrador is closed: create a new one")
            expect(board.get_by_role("button", name="Launch")).to_be_disabled()
            expect(page.get_by_text("Mercado Municipal — Início").first).to_be_visible()
            # The rastreio cell: the result's row has the job's duration and the page's title.
            result_row = page.locator(".orq-rastreio tr", has_text="resultado_coleta")
            expect(result_row).to_contain_text(re.compile(r"\d+ ms\s*Mercado Municipal — Início"))
            body = page.inner_text("body")
            assert "refresh failed" not in body
            assert "serving escavador_http" not in body, "worker log lines stay in their files"
            shot = tmp_path / "01_lancar_coletas.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    keep_screenshots(shot)
    logs = "".join(p.read_text() for p in (voila.home / "detached").glob("worker-*.log"))
    assert logs.count("serving escavador_http") == 2, logs  # where the two workers' lines went
    assert (voila.home / "orquestrador.db").exists(), "the store stays for the next run"


@pytest.mark.nats
@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("voila", ["interactive"], indirect=True)
def test_launching_from_the_dashboard_in_a_real_browser(voila: Served, tmp_path: Path) -> None:
    """Clicks travel browser → kernel → broker → workers, and the counts come back live."""
    sync_api = playwright()
    expect = sync_api.expect
    pages = len(list(SITE.glob("*.html")))
    outside: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser, page = open_page(pw, tmp_path, outside)
        try:
            page.goto(voila.url, timeout=150_000, wait_until="load")
            board = page.locator(".orq-painel")
            reached(board, f"{LAUNCHED}/{LAUNCHED} done", voila)
            source = board.locator("select").filter(
                has=page.locator("option", has_text="one job per row of url")
            )
            source.select_option(label="one job per row of url")
            expect(board.locator(".orq-copias input")).to_be_disabled()  # copies: one per row instead
            board.get_by_role("button", name="Launch").click()
            expect(board).to_contain_text(f"launched {pages} × http", timeout=30_000)
            # The launcher shows the batch it launched, with the line that reopens it.
            launched = board.locator(".orq-lote")
            expect(launched).to_contain_text(f"{pages}/{pages} done", timeout=60_000)
            expect(launched.locator(".orq-reopen")).to_contain_text('orq.lote("')
            total = LAUNCHED + pages
            # No cell runs any more: only the live refresh can bring these counts to the page.
            reached(board, f"{total}/{total} done", voila)
            expect(board).to_contain_text(f"ok {total}", timeout=10_000)
            assert "refresh failed" not in page.inner_text("body")
            shot = tmp_path / "01_painel_launched.png"
            board.screenshot(path=str(shot))
            # A plugin no worker serves: the form says so before anything is sent.
            alvo = board.locator("select").filter(has=page.locator("option", has_text="escavador rss"))
            alvo.select_option(label="escavador rss")
            expect(board).to_contain_text("no worker consumes queue escavador_rss", timeout=30_000)
            expect(board).to_contain_text("orq worker escavador rss")
            unserved = tmp_path / "01_painel_unserved.png"
            board.screenshot(path=str(unserved))
        finally:
            browser.close()
    keep_screenshots(shot, unserved)
    assert outside, "the CDN stylesheet Voila links was requested and refused"


class SlowPages(BaseHTTPRequestHandler):
    """Pages that take a while, each request counted: a job run twice would show here."""

    hits: ClassVar[Counter[str]] = Counter()
    delay = 0.25

    def do_GET(self) -> None:
        self.hits[self.path] += 1
        time.sleep(self.delay)
        body = f"<html><head><title>lenta {self.path}</title></head><body>ok</body></html>".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return None


def code_cells(*sources: str) -> dict[str, Any]:
    book = json.loads(NOTEBOOK.read_text())
    book["cells"] = [
        {"cell_type": "code", "execution_count": None, "id": uuid.uuid4().hex[:8], "metadata": {},
         "outputs": [], "source": source}
        for source in sources
    ]  # fmt: skip
    return book


def finished_in_store(home: Path, lote: str) -> int:
    """Read-only, from this test process: how many jobs of the batch the store has as final."""
    with contextlib.closing(sqlite3.connect(f"file:{home / 'orquestrador.db'}?mode=ro", uri=True)) as db:
        sql = "SELECT COUNT(*) FROM jobs WHERE lote = ? AND estado IN ('ok', 'erro', 'dead-lettered')"
        return int(db.execute(sql, (lote,)).fetchone()[0])


def restart_kernel(voila: Served) -> int:
    """What JupyterLab's "Restart kernel" sends: a shutdown request with restart=True."""
    from jupyter_client import BlockingKernelClient

    marked = processes_marked(voila.marker)
    kernels = [pid for pid in marked if b"ipykernel" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert len(kernels) == 1, kernels
    argv = Path(f"/proc/{kernels[0]}/cmdline").read_bytes().decode().split("\0")
    connection = argv[argv.index("-f") + 1]  # the kernel's ports and key, as Voila wrote them
    client = BlockingKernelClient(connection_file=connection)
    client.load_connection_file()
    client.start_channels()
    try:
        client.shutdown(restart=True)
    finally:
        client.stop_channels()
    deadline = time.monotonic() + 30
    while Path(f"/proc/{kernels[0]}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return kernels[0]


JOBS = 400  # at 0.25 s a page on 2 × 8 worker slots: about 6 s of work


@pytest.mark.nats
@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("voila", ["restart"], indirect=True)
def test_a_kernel_restart_mid_batch_loses_nothing(voila: Served, tmp_path: Path) -> None:
    """Launch, restart the kernel while the batch runs, paste the widget's line: every job, once."""
    sync_api = playwright()
    expect = sync_api.expect
    setup = next(c for c in json.loads(NOTEBOOK.read_text())["cells"] if c["cell_type"] == "code")
    setup_source = "".join(setup["source"])  # notebook 01's first cell, as a user runs it again
    SlowPages.hits.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowPages)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    slow = f"http://127.0.0.1:{server.server_address[1]}"
    payloads = f'[{{"url": f"{slow}/p{{i}}"}} for i in range({JOBS})]'
    launch = f"lote = orq.iniciar_coletas('http', {payloads}, progress=False)\nlote"
    (voila.notebook / "launch.ipynb").write_text(json.dumps(code_cells(setup_source, launch)))
    outside: list[str] = []
    try:
        with sync_api.sync_playwright() as pw:
            browser, page = open_page(pw, tmp_path, outside)
            try:
                page.goto(voila.render("launch.ipynb"), timeout=150_000, wait_until="load")
                batch = page.locator(".orq-lote")
                expect(batch).to_contain_text(f"/{JOBS} done", timeout=60_000)
                reopen = batch.locator(".orq-reopen").inner_text()  # what a user copies
                lote_id = re.fullmatch(r'orq\.lote\("([0-9a-f-]{36})"\)', reopen).group(1)  # type: ignore[union-attr]
                deadline = time.monotonic() + 60
                while finished_in_store(voila.home, lote_id) == 0 and time.monotonic() < deadline:
                    time.sleep(0.05)
                workers = detached.running(voila.home)
                done_before = finished_in_store(voila.home, lote_id)
                restart_kernel(voila)
                assert 0 < done_before < JOBS, f"the restart came mid-batch: {done_before}/{JOBS} done"
                shot_before = tmp_path / "restart_1_launched.png"
                page.screenshot(path=str(shot_before), full_page=True)
                # The workers and the broker outlived the kernel; results go on arriving meanwhile.
                assert detached.running(voila.home) == workers and len(workers) == 3  # 2 workers + site

                check = (
                    "lote.wait(120)\nr = lote.resultados()\n"
                    "len(r), r['message_id'].nunique(), r['status'].astype(str).value_counts().to_dict()"
                )
                book = code_cells(setup_source, f"lote = {reopen}\nlote", check)
                (voila.notebook / "reopen.ipynb").write_text(json.dumps(book))
                page.goto(voila.render("reopen.ipynb"), timeout=180_000, wait_until="load")
                expect(page.get_by_text(f"({JOBS}, {JOBS}, {{'ok': {JOBS}}})")).to_be_visible(timeout=30_000)
                reopened = page.locator(".orq-lote")
                expect(reopened).to_contain_text(f"{JOBS}/{JOBS} done", timeout=30_000)
                expect(reopened).to_contain_text(re.compile(r"avg \d+\.\d jobs/s"))
                expect(reopened.locator(".orq-reopen")).to_have_text(reopen)
                assert "refresh failed" not in page.inner_text("body")
                shot_after = tmp_path / "restart_2_reopened.png"
                page.screenshot(path=str(shot_after), full_page=True)
            finally:
                browser.close()
    finally:
        server.shutdown()
        server.server_close()
    # The same workers, none started twice; and every page was fetched once: no job ran twice.
    assert detached.running(voila.home) == workers
    SlowPages.hits.pop("/robots.txt", None)  # read once per worker process, as robots.txt is
    assert len(SlowPages.hits) == JOBS and set(SlowPages.hits.values()) == {1}, SlowPages.hits.most_common(3)
    keep_screenshots(shot_before, shot_after)
