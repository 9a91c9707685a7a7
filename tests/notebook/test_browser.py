"""Notebook 01 served by Voila and opened in headless Chromium: what a user's browser shows.

Why: nbclient proves the cells run; only a browser proves the widgets render from their comm
messages, that the dashboard's counts reach the jobs launched, and that nothing on the page is
fetched from outside the machine. A screenshot is kept for the eye (tests/notebook/artifacts/).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
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


@pytest.fixture
def voila(tmp_path: Path) -> Iterator[tuple[str, Path, str]]:
    """Voila serving notebook 01 on loopback; afterwards every process it started is gone."""
    if not shutil.which("voila"):
        unreachable("voila (pip install -e '.[dev]')")
    marker = uuid.uuid4().hex
    port = free_port()
    scratch = tmp_path / "tmp"  # the notebook's ORQ_HOME is tempfile.mkdtemp() under it
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
        "voila", str(NOTEBOOK), f"--port={port}", "--no-browser", "--Voila.ip=127.0.0.1",
        "--show_tracebacks=True", "--VoilaConfiguration.http_keep_alive_timeout=5",
    ]  # fmt: skip
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_port(port, proc, 60)
        yield f"http://127.0.0.1:{port}/", scratch, marker
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # voila shuts its kernel down on SIGTERM
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()
        for home in scratch.glob("orq-notebook-*"):  # a run that failed before its last cell
            embedded.stop(home)
        deadline = time.monotonic() + 20
        while (left := processes_marked(marker)) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in left:  # the kernel or a worker that outlived voila: ours, by pid
            os.kill(pid, signal.SIGKILL)
        assert not left, f"processes left running after voila stopped: {left}"


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


@pytest.mark.nats
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_notebook_01_dashboard_in_a_real_browser(voila: tuple[str, Path, str], tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        unreachable(f"chromium at {CHROMIUM} (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    url, scratch, _ = voila
    pages = len(list(SITE.glob("*.html")))
    launched = 1 + 5 * pages  # notebook 01: one job, then every demo page five times
    outside: list[str] = []

    def loopback_only(route) -> None:  # type: ignore[no-untyped-def]
        if urlsplit(route.request.url).hostname in ("127.0.0.1", "localhost"):
            route.continue_()
        else:  # Voila links a CDN stylesheet: this test sends nothing off the machine
            outside.append(route.request.url)
            route.abort()

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            tmp_path / "chromium-profile",  # a fresh profile: nothing from earlier runs
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 2200},
        )
        try:
            page = browser.new_page()
            page.route("**/*", loopback_only)
            # Voila answers once the whole notebook ran: its last cell stops workers and broker.
            page.goto(url, timeout=150_000, wait_until="load")
            board = page.locator(".orq-painel")
            expect = sync_api.expect
            expect(board).to_be_visible(timeout=60_000)
            expect(board).to_contain_text(f"{launched}/{launched} done", timeout=60_000)
            expect(board).to_contain_text(f"ok {launched}", timeout=10_000)
            expect(board.locator(".widget-tab")).to_contain_text("launch", timeout=10_000)
            batch = f"{launched - 1}/{launched - 1} done"  # the Lote widget of the batch cell
            expect(page.locator(".widget-html", has_text=batch)).to_have_count(1, timeout=30_000)
            expect(page.get_by_text("Mercado Municipal — Início").first).to_be_visible()
            assert "refresh failed" not in page.inner_text("body")

            shot = tmp_path / "01_lancar_coletas.png"
            page.screenshot(path=str(shot), full_page=True)
            board_shot = tmp_path / "01_painel.png"
            board.screenshot(path=str(board_shot))
        finally:
            browser.close()

    for path in (shot, board_shot):
        width, height = png_size(path)
        assert width >= 600 and height >= 150 and path.stat().st_size > 10_000, (path, width, height)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / ".gitignore").write_text("*\n")
    for path in (shot, board_shot):
        shutil.copy(path, ARTIFACTS / path.name)
    print(f"screenshots: {ARTIFACTS / shot.name}, {ARTIFACTS / board_shot.name}")
    assert not list(scratch.glob("orq-notebook-*")), "the notebook's last cell removes its ORQ_HOME"
