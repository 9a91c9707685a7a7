"""What every throwaway server shares: free ports, the skip-or-fail rule, and a process that is
started, waited for on its port (bounded), stopped, killed and restarted."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import NoReturn

import pytest

HOST = "127.0.0.1"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
LOG_TAIL_LINES = 40


def unreachable(what: str) -> NoReturn:
    """Skip the test on a laptop; fail it under ``CI=true``, where no broker test may skip."""
    if IN_CI:
        pytest.fail(f"{what} (CI=true: broker tests must not be skipped)", pytrace=False)
    pytest.skip(what)


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now and that this run has not
    handed out before: the kernel may give a just-released port again, and two servers of one
    cluster, started one after the other, then shared a port (a CI run's cluster had five nodes)."""
    while True:
        with socket.socket() as sock:
            sock.bind((HOST, 0))
            port = int(sock.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def port_open(port: int, host: str = HOST) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The end of a server's log, for the message of a server that did not come up."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    tail = text.splitlines()[-lines:]
    return f"last {len(tail)} lines of {path}:\n" + "\n".join(tail)


class ServerProcess:
    """A server process started by this test run, waited for until :meth:`ready`.

    Subclasses give ``name``, ``install_hint`` (one line: what to install when the program is
    missing) and :meth:`command`; ``start_timeout`` bounds the wait, and a server that does not
    come up in time is killed and its log's end is printed in the failure.
    """

    name = "server"
    install_hint = ""
    start_timeout = 20.0

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_file = self.workdir / f"{self.name}.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str] | None:
        """The server's environment (``None``: this process's)."""
        return None

    def ready(self) -> bool:
        """Whether the server takes clients; by default, whether its port accepts."""
        return port_open(self.port)

    def not_installed(self, detail: str) -> NoReturn:
        unreachable(f"{self.name} is not installed ({detail}): {self.install_hint}")

    def start(self) -> None:
        """Start (again) on the same port and data directory; waits until :meth:`ready`."""
        if self.running:
            return
        command = self.command()
        with open(self.log_file, "ab") as log:
            try:
                self.proc = subprocess.Popen(
                    command, env=self.env(), stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT, cwd=self.workdir, start_new_session=True,
                )  # fmt: skip
            except FileNotFoundError as exc:
                self.not_installed(str(exc))
            except OSError as exc:
                unreachable(f"throwaway {self.name} could not start ({exc})")
        self.wait_ready()

    def wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.proc = None
                unreachable(f"throwaway {self.name} exited with {code}; {log_tail(self.log_file)}")
            if self.ready():
                return
            time.sleep(0.05)
        self.kill()
        unreachable(
            f"throwaway {self.name} not ready on port {self.port} after {self.start_timeout:.0f} s; "
            f"{log_tail(self.log_file)}"
        )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        """A clean shutdown (SIGTERM); SIGKILL if it takes longer than ``timeout``."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        self.proc = None

    def kill(self) -> None:
        """Crash it (SIGKILL), as a power cut or the OOM killer would."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(15)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self):  # type: ignore[no-untyped-def]
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
