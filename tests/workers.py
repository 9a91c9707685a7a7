"""Start real ``orq worker`` processes for tests and wait until they serve."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).parent.parent


class WorkerProcess:
    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            if "serving " in line:
                self._ready.set()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float = 20.0) -> None:
        if not self._ready.wait(timeout):
            self.proc.kill()
            raise AssertionError("worker did not start:\n" + "".join(self.lines[-30:]))

    def output(self) -> str:
        return "".join(self.lines)

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def start_worker(
    url: str,
    plugin: str,
    suffix: str,
    *,
    kind: str = "escavador",
    concurrency: int = 4,
    visibility_timeout: float = 30.0,
    extra: list[str] | None = None,
    wait: bool = True,
    builtin: bool = False,
) -> WorkerProcess:
    """``builtin=True`` runs an installed plugin under its own name (``orq worker escavador sitemap``),
    found through its entry point: no suffix, no ``--module tests.plugins_teste``."""
    env = {**os.environ, "ORQ_TEST_PLUGIN_SUFFIX": suffix, "ORQ_BROKER_URL": url}
    target = [plugin] if builtin else [f"{plugin}_{suffix}", "--module", "tests.plugins_teste"]
    command = [
        sys.executable, "-m", "orquestrador.cli", "worker", kind, *target,
        "--concurrency", str(concurrency),
        "--visibility-timeout", str(visibility_timeout), *(extra or []),
    ]  # fmt: skip
    proc = subprocess.Popen(
        command, cwd=ROOT, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    worker = WorkerProcess(proc)
    if wait:
        worker.wait_ready()
    return worker


def wait_for(check, timeout: float = 30.0, interval: float = 0.1):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)
