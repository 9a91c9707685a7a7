"""Columnar reads of the store, made by a reader process so this one holds one SQLite library.

``resultados()`` over a million rows needs Arrow's SQLite driver (values land in Arrow arrays in
C, not as Python objects), but that driver bundles a second SQLite library, and two libraries in
one process lose committed data (see :mod:`.reader_process`). The driver therefore runs in a
child process, started on first use and reused; the child answers each query with an Arrow IPC
file in anonymous memory, which this process maps without copying.

The child never outlives this process: it exits when its socket closes (this process exiting,
however it dies) or when it sees its parent gone. A child that dies mid-query gives a
:class:`~orquestrador.errors.StoreError`, and the next query starts a new one.
"""

from __future__ import annotations

import atexit
import mmap
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orquestrador.errors import StoreError
from orquestrador.store import reader_process

if TYPE_CHECKING:  # imported on first read: starting the child does not wait for pyarrow
    import pyarrow as pa


class DriverMissing(Exception):
    """The reader process has no Arrow SQLite driver: read with Python's sqlite3 instead."""


class ReaderProcess:
    """One reader child; requests are serialised (one query at a time)."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self._env = env  # the child's environment; None: this process's
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._pid = os.getpid()

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs (for tests and diagnostics)."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def start(self) -> None:
        """Start the child now if it is not running (it imports pyarrow while the caller works)."""
        with self._lock:
            self._ensure()

    def _ensure(self) -> socket.socket:
        if self._pid != os.getpid():  # a fork of the process that started it: not ours to use
            self._proc, self._sock, self._pid = None, None, os.getpid()
        if self._proc is not None and self._proc.poll() is None and self._sock is not None:
            return self._sock
        self._stop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-P", reader_process.__file__, str(theirs.fileno()), str(os.getpid())],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                env=self._env,
            )
        except OSError as exc:
            ours.close()
            raise StoreError(f"could not start the store reader process ({exc})") from exc
        finally:
            theirs.close()
        self._sock = ours
        return ours

    def query(
        self, path: Path, sql: str, args: Sequence[Any] = (), options: dict[str, str] | None = None
    ) -> pa.Table:
        """Run ``sql`` on the store at ``path`` in the reader; raises DriverMissing without the driver."""
        return self.query_many(path, [(sql, args)], options)[0]

    def query_many(
        self,
        path: Path,
        queries: Sequence[tuple[str, Sequence[Any]]],
        options: dict[str, str] | None = None,
    ) -> list[pa.Table]:
        """Several queries read side by side (e.g. one per rowid range); one table each."""
        request = {
            "path": str(path),
            "queries": [{"sql": sql, "args": list(args)} for sql, args in queries],
            "options": options or {},
        }
        with self._lock:
            sock = self._ensure()
            try:
                sock.sendall(reader_process.encode_message(request))
                answer, fd = self._receive(sock)
            except BaseException as exc:
                # Interrupted or broken mid-exchange: the next answer on this socket would be
                # this one's, so the child is replaced rather than trusted.
                code = self._stop()
                if isinstance(exc, OSError | EOFError):
                    raise StoreError(
                        f"the store reader process died while reading {path} (exit code {code});"
                        " the next call starts a new one. If it keeps dying, the machine may be"
                        " out of memory: filter resultados() by alvo, status or time"
                    ) from None
                raise
        if not answer.get("ok"):
            if answer.get("kind") == "driver-missing":
                raise DriverMissing(answer.get("error", ""))
            raise StoreError(f"reading the store {path} failed: {answer.get('kind')}: {answer.get('error')}")
        if fd is None:
            raise StoreError("the store reader process answered without its data")
        table = _map_table(fd, int(answer["bytes"]))
        parts, offset = [], 0
        for rows in answer["rows"]:
            parts.append(table.slice(offset, rows))
            offset += rows
        return parts

    def _receive(self, sock: socket.socket) -> tuple[dict[str, Any], int | None]:
        data, fds, _, _ = socket.recv_fds(sock, 65536, 1)
        if not data:
            raise EOFError("the reader closed its socket")
        message = reader_process.recv_message(sock, data)
        if message is None:
            raise EOFError("the reader closed its socket")
        return message, (fds[0] if fds else None)

    def _stop(self) -> int | None:
        """Close the socket (the child exits on EOF) and reap it; its exit code."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        try:
            return proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()

    def close(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                self._stop()


def _map_table(fd: int, size: int) -> pa.Table:
    """The IPC file behind ``fd`` as a table whose columns point into the mapping (no copy)."""
    import pyarrow as pa

    try:
        if size == 0:
            raise StoreError("the store reader process answered with an empty file")
        # MAP_POPULATE maps every page at once instead of one fault per page as columns are read
        flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
        view = mmap.mmap(fd, size, flags=flags, prot=mmap.PROT_READ)
    finally:
        os.close(fd)
    return pa.ipc.open_file(pa.py_buffer(view)).read_all()


shared = ReaderProcess()
atexit.register(shared.close)
