"""Notebook 01 served by Voila and opened in headless Chromium: what a user's browser shows.

Why: nbclient proves the cells run; only a browser proves the widgets render from their comm
messages, that the dashboard's counts reach the jobs launched, and that nothing on the page is
fetched from outside the machine. A screenshot is kept for the eye (tests/notebook/artifacts/).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from orquestrador.brokers import embedded
from orquestrador.demo import SITE
from tests.conftest import unreachable

CHROMIUM = Path("/usr/bin/chromium")
NOTEBOOK = Path(__file__).parent.parent.parent / "notebooks" / "01_lancar_coletas.ipynb"
ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
MARKER = "ORQ_BROWSER_TEST"  # in the environment of every process this test starts, to find them


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
    scratch: Path  # TMPDIR of the kernel: the notebook's ORQ_HOME is made under it
    notebook: Path


@pytest.fixture
def voila(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    """Voila serving notebook 01 on loopback; afterwards every process it started is gone.

    ``request.param`` "whole" serves the notebook as is (it stops all it started: checked),
    "interactive" without its last cell, and the fixture stops the workers and broker it left.
    """
    if not shutil.which("voila"):
        unreachable("voila (pip install -e '.[dev]')")
    whole = request.param == "whole"
    notebook = NOTEBOOK if whole else without_last_cell(tmp_path)
    marker = uuid.uuid4().hex
    port = free_port()
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {
        **os.environ,
        MARKER: marker,
        "TMPDIR": str(scratch),
        "ORQ_HOME": str(tmp_path / "unused-home"),
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
        yield Served(f"http://127.0.0.1:{port}/", scratch, notebook)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # voila shuts its kernel down on SIGTERM
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()
        for home in scratch.glob("orq-notebook-*"):  # left by the interactive run, or a failed one
            embedded.stop(home)
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
            expect(page.get_by_text("Mercado Municipal — Início").first).to_be_visible()
            # The rastreio cell: the result's row has the job's duration and the page's title.
            result_row = page.locator("tr", has_text="resultado_coleta")
            expect(result_row).to_contain_text(re.compile(r"\d+ ms\s*Mercado Municipal — Início"))
            assert "refresh failed" not in page.inner_text("body")
            shot = tmp_path / "01_lancar_coletas.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    keep_screenshots(shot)
    assert not list(voila.scratch.glob("orq-notebook-*")), "the notebook's last cell removes its ORQ_HOME"


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
            expect(board.locator("input[type=number]")).to_be_disabled()  # copies: one per row instead
            board.get_by_role("button", name="Launch").click()
            expect(board).to_contain_text(f"launched {pages} × http", timeout=30_000)
            total = LAUNCHED + pages
            # No cell runs any more: only the live refresh can bring these counts to the page.
            reached(board, f"{total}/{total} done", voila)
            expect(board).to_contain_text(f"ok {total}", timeout=10_000)
            assert "refresh failed" not in page.inner_text("body")
            shot = tmp_path / "01_painel_launched.png"
            board.screenshot(path=str(shot))
        finally:
            browser.close()
    keep_screenshots(shot)
    assert outside, "the CDN stylesheet Voila links was requested and refused"
