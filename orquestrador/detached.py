"""Processes a notebook starts that outlive its kernel: ``orq worker`` processes, the demo site.

Why: a kernel restart kills the kernel's process group and whatever writes to its output. A
worker started here runs in a session of its own, writes its log to a file under ``ORQ_HOME``
(never into whichever cell ran last), and is recorded there by name, so running the notebook
again after a restart finds it instead of starting another. ``stop()`` ends them.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from orquestrador import settings
from orquestrador.settings import ENV_BROKER_URL

_children: list[subprocess.Popen[bytes]] = []  # reaped by stop(); keeps Popen from warning


def _dir(home: Path | None) -> Path:
    return (home or settings.home()) / "detached"


def _record(home: Path | None, name: str) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = json.loads((_dir(home) / f"{name}.json").read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found.get("pid"), int) and _alive(found["pid"]) else None


def _alive(pid: int) -> bool:
    """A live (not zombie) process whose command line is one of ours, not a recycled pid."""
    _reap()
    proc = Path(f"/proc/{pid}")
    if not proc.exists():
        if Path("/proc/self").exists():
            return False
        try:  # no /proc (macOS): only whether the pid exists
            os.kill(pid, 0)
        except OSError:
            return False
        return True
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        command = (proc / "cmdline").read_bytes()
    except (OSError, IndexError):
        return False
    return state != "Z" and (b"orquestrador" in command or b"http.server" in command)


def _reap() -> None:
    for child in list(_children):
        if child.poll() is not None:
            _children.remove(child)


def ensure(name: str, command: list[str], *, home: Path | None = None, **extra: Any) -> dict[str, Any]:
    """The record of process ``name``, started with ``command`` unless it already runs.

    ``extra`` is kept in the record (e.g. the demo site's URL). The broker URL goes by
    environment, never on a command line.
    """
    found = _record(home, name)
    if found is not None:
        return found
    folder = _dir(home)
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / f"{name}.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, env=extra.pop("env", None),
        )  # fmt: skip
    _children.append(proc)
    record = {"name": name, "pid": proc.pid, "command": command, "log": str(log), **extra}
    (folder / f"{name}.json").write_text(json.dumps(record))
    return record


def running(home: Path | None = None) -> dict[str, int]:
    """Name → pid of the detached processes still running."""
    folder = _dir(home)
    names = sorted(p.stem for p in folder.glob("*.json")) if folder.exists() else []
    return {name: rec["pid"] for name in names if (rec := _record(home, name)) is not None}


def stop(home: Path | None = None, *, timeout: float = 15.0) -> list[str]:
    """SIGTERM every detached process (workers drain their jobs first), then SIGKILL stragglers."""
    alive = running(home)
    for pid in alive.values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(_alive(pid) for pid in alive.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in alive.values():
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    for name in alive:
        (_dir(home) / f"{name}.json").unlink(missing_ok=True)
    for child in list(_children):
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(1)
    _reap()
    return sorted(alive)


def start_workers(
    url: str,
    count: int = 2,
    *,
    kind: str = "escavador",
    alvos: tuple[str, ...] = ("http",),
    concurrency: int = 8,
    home: Path | None = None,
) -> list[int]:
    """``count`` detached ``orq worker KIND ALVOS…`` processes; those already running are kept."""
    command = [
        sys.executable,
        "-m",
        "orquestrador.cli",
        "worker",
        kind,
        *alvos,
        "--concurrency",
        str(concurrency),
    ]
    env = {**os.environ, ENV_BROKER_URL: url}
    base = f"worker-{kind}-{'-'.join(alvos)}"
    return [ensure(f"{base}-{n}", command, home=home, env=env)["pid"] for n in range(count)]


def serve_demo_site(home: Path | None = None, *, timeout: float = 15.0) -> str:
    """The demo pages on a loopback port that stays the same across kernel restarts; its URL."""
    from orquestrador.demo import SITE

    found = _record(home, "demo-site")
    if found is None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        command = [
            sys.executable,
            "-m",
            "http.server",
            str(port),
            "--bind",
            "127.0.0.1",
            "--directory",
            str(SITE),
        ]
        found = ensure("demo-site", command, home=home, url=f"http://127.0.0.1:{port}")
    url: str = found["url"]
    port = int(url.rsplit(":", 1)[1])
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return url
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
