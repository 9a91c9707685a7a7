"""``orq worker … --processes N``: one supervisor, N worker processes, every core busy.

The supervisor runs no jobs and holds no broker connection. It starts N children with the same
command line (marked by ``ORQ_SUPERVISED`` so they serve instead of supervising), forwards
SIGTERM/SIGINT so each drains its in-flight jobs, and restarts a child that dies on its own after
a growing pause. A child that keeps dying young (``max_crashes`` times in a row, each within
``stable_after`` seconds of its start: a bad plugin, a broker that refuses us) is a fault that
restarts will not fix, so the supervisor stops the others and exits 1. A second signal kills
the children without waiting for their jobs, which the broker then redelivers.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import FrameType

ENV_SUPERVISED = "ORQ_SUPERVISED"

log = logging.getLogger("orquestrador.supervisor")


@dataclass
class _Slot:
    index: int
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    crashes: int = 0
    restart_at: float = 0.0


class Supervisor:
    def __init__(
        self,
        command: Sequence[str],
        processes: int,
        *,
        metrics_port: int | None = None,
        max_crashes: int = 5,
        stable_after: float = 30.0,
        poll_interval: float = 0.2,
    ) -> None:
        self.command = list(command)
        self.slots = [_Slot(i) for i in range(processes)]
        self.metrics_port = metrics_port
        self.max_crashes = max_crashes
        self.stable_after = stable_after
        self.poll_interval = poll_interval
        self._signals: list[int] = []
        self._env = dict(os.environ)
        self._metrics_dir: str | None = None

    def run(self) -> int:
        """Supervise until a signal (0 when every child drained cleanly) or a crash loop (1)."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self._serve_metrics()
            return self._loop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if self._metrics_dir:
                shutil.rmtree(self._metrics_dir, ignore_errors=True)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals.append(signum)

    def _serve_metrics(self) -> None:
        if self.metrics_port is None:
            return
        from orquestrador.worker import metrics

        self._metrics_dir = tempfile.mkdtemp(prefix="orq-metrics-")
        self._env[metrics.ENV_MULTIPROC_DIR] = self._metrics_dir
        metrics.serve(self.metrics_port, multiprocess_dir=self._metrics_dir)
        log.info("metrics of all %d worker processes on port %d", len(self.slots), self.metrics_port)

    def _start(self, slot: _Slot) -> None:
        env = {**self._env, ENV_SUPERVISED: str(slot.index + 1)}
        slot.proc = subprocess.Popen(self.command, env=env)
        slot.started = time.monotonic()
        log.info("started worker process %d/%d (pid %d)", slot.index + 1, len(self.slots), slot.proc.pid)

    def _loop(self) -> int:
        for slot in self.slots:
            self._start(slot)
        while True:
            if self._signals:
                return self._shutdown()
            now = time.monotonic()
            for slot in self.slots:
                if slot.proc is None:
                    if now >= slot.restart_at:
                        self._start(slot)
                    continue
                code = slot.proc.poll()
                if code is None:
                    continue
                if not self._schedule_restart(slot, code, now):
                    self._stop_children(signal.SIGTERM)
                    self._wait_children()
                    return 1
            time.sleep(self.poll_interval)

    def _schedule_restart(self, slot: _Slot, code: int, now: float) -> bool:
        assert slot.proc is not None
        pid = slot.proc.pid
        self._forget(pid)
        slot.proc = None
        slot.crashes = 1 if now - slot.started >= self.stable_after else slot.crashes + 1
        if slot.crashes >= self.max_crashes:
            log.error(
                "worker process %d keeps dying (exit code %d, %d times in a row within %.0fs of "
                "starting); stopping: fix the cause shown above and start again",
                slot.index + 1, code, slot.crashes, self.stable_after,
            )  # fmt: skip
            return False
        delay = min(30.0, 0.5 * 2 ** (slot.crashes - 1))
        slot.restart_at = now + delay
        log.warning("worker process %d (pid %d) exited with code %d; restarting in %.1fs",
                    slot.index + 1, pid, code, delay)  # fmt: skip
        return True

    def _shutdown(self) -> int:
        sig = self._signals[0]
        log.info("%s received: draining %d worker process(es)", signal.Signals(sig).name, self._alive())
        self._stop_children(signal.SIGTERM)
        forced = False
        while self._alive():
            if len(self._signals) > 1 and not forced:
                log.warning("second signal: killing worker processes (unfinished jobs are redelivered)")
                self._stop_children(signal.SIGKILL)
                forced = True
            time.sleep(self.poll_interval)
        codes = [slot.proc.returncode for slot in self.slots if slot.proc is not None]
        for slot in self.slots:
            if slot.proc is not None:
                self._forget(slot.proc.pid)
        return 0 if not forced and all(code == 0 for code in codes) else 1

    def _alive(self) -> int:
        return sum(1 for slot in self.slots if slot.proc is not None and slot.proc.poll() is None)

    def _stop_children(self, sig: int) -> None:
        for slot in self.slots:
            if slot.proc is not None and slot.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    slot.proc.send_signal(sig)

    def _wait_children(self) -> None:
        for slot in self.slots:
            if slot.proc is not None:
                slot.proc.wait()

    def _forget(self, pid: int) -> None:
        if self._metrics_dir:
            from orquestrador.worker import metrics

            metrics.mark_dead(pid)


def child_command(argv: Sequence[str] | None = None) -> list[str]:
    """The command that runs this same ``orq`` invocation again, as a child."""
    return [sys.executable, "-m", "orquestrador.cli", *(sys.argv[1:] if argv is None else argv)]


def is_child() -> bool:
    return bool(os.environ.get(ENV_SUPERVISED))
