"""The store's columnar reader, run as a process of its own by :mod:`orquestrador.store.reader`.

Apache Arrow's SQLite driver bundles its own copy of SQLite. Two SQLite libraries in one
process break SQLite's POSIX locking: closing the driver's connection drops the locks Python's
``sqlite3`` holds on the same file, and the other library then deletes a WAL it still writes
to, losing committed results. So the driver only ever runs here, and the orchestrator's process
opens the store through Python's ``sqlite3`` alone.

Run as ``python -P reader_process.py SOCKET_FD PARENT_PID``; it imports nothing from the
package (no pydantic, no brokers), so it starts in the time pyarrow takes to import. Each
request is one query; the answer is an Arrow IPC file in an anonymous memory file (memfd)
whose descriptor is passed back over the socket, so the parent maps the columns without a copy.
It exits when the socket closes or its parent dies, whichever comes first.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

HEADER = struct.Struct("!I")
MAX_REQUEST = 64 * 1024 * 1024


def recv_message(sock: socket.socket, first: bytes = b"") -> dict[str, Any] | None:
    """One length-prefixed JSON message; None at end of stream."""
    data = bytearray(first)
    while len(data) < HEADER.size:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
    (size,) = HEADER.unpack_from(data)
    if size > MAX_REQUEST:
        raise ValueError(f"message of {size} bytes is over the {MAX_REQUEST} limit")
    while len(data) < HEADER.size + size:
        chunk = sock.recv(min(65536, HEADER.size + size - len(data)))
        if not chunk:
            return None
        data += chunk
    message: dict[str, Any] = json.loads(bytes(data[HEADER.size : HEADER.size + size]))
    return message


def encode_message(message: dict[str, Any]) -> bytes:
    body = json.dumps(message).encode()
    return HEADER.pack(len(body)) + body


def _answer(sock: socket.socket, message: dict[str, Any], fd: int | None = None) -> None:
    data = encode_message(message)
    sent = socket.send_fds(sock, [data], [fd]) if fd is not None else sock.send(data)
    if sent < len(data):
        sock.sendall(data[sent:])


def _anonymous_file() -> int:
    if hasattr(os, "memfd_create"):
        return os.memfd_create("orquestrador-resultados", os.MFD_CLOEXEC)
    with tempfile.TemporaryFile() as handle:  # unlinked at once: nothing is left behind
        return os.dup(handle.fileno())


def _fetch(adbc: Any, path: str, options: dict[str, str], sql: str, args: list[Any]) -> Any:
    with adbc.connect(path) as conn, conn.cursor() as cur:
        if options:
            cur.adbc_statement.set_options(**options)
        cur.execute(sql, args)
        return cur.fetch_arrow_table()


def _query(adbc: Any, pa: Any, request: dict[str, Any]) -> tuple[int, int, list[int]]:
    """Run the request's queries, side by side; the IPC file's descriptor, size, rows per query.

    SQLite fills one query's columns on one core; a caller that splits its query by rowid
    ranges gets the parts read in parallel (the driver does not hold the GIL while it steps).
    """
    queries = request["queries"]
    fetch = partial(_fetch, adbc, request["path"], request.get("options") or {})
    if len(queries) == 1:
        tables = [fetch(queries[0]["sql"], queries[0].get("args") or [])]
    else:
        with ThreadPoolExecutor(len(queries)) as pool:
            tables = list(pool.map(lambda q: fetch(q["sql"], q.get("args") or []), queries))
    table = pa.concat_tables(tables, promote_options="permissive")
    fd = _anonymous_file()
    try:
        with os.fdopen(os.dup(fd), "wb") as raw:
            with pa.ipc.new_file(pa.PythonFile(raw, mode="w"), table.schema) as writer:
                writer.write_table(table)
            size = raw.tell()
    except BaseException:
        os.close(fd)
        raise
    rows = [t.num_rows for t in tables]
    del table, tables
    _give_memory_back(pa)
    return fd, size, rows


def _give_memory_back(pa: Any) -> None:
    """An idle reader should not keep a query's peak: the driver's columns live in malloc'd memory."""
    pa.default_memory_pool().release_unused()
    with contextlib.suppress(OSError, AttributeError):  # glibc only
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _watch_parent(parent: int) -> None:
    """Exit as soon as the parent is gone, even in the middle of a query."""
    while os.getppid() == parent:
        time.sleep(0.2)
    os._exit(0)


def serve(sock: socket.socket, parent: int) -> None:
    threading.Thread(target=_watch_parent, args=(parent,), name="parent-watch", daemon=True).start()
    adbc: Any
    pa: Any
    try:
        import adbc_driver_sqlite.dbapi as adbc
        import pyarrow as pa
    except ImportError as exc:  # answered per request: the parent falls back to Python's sqlite3
        adbc, pa, missing = None, None, f"{exc}"
    while True:
        request = recv_message(sock)
        if request is None:
            return
        if adbc is None:
            _answer(sock, {"ok": False, "kind": "driver-missing", "error": missing})
            continue
        try:
            fd, size, rows = _query(adbc, pa, request)
        except Exception as exc:  # the parent raises it as a StoreError with this text
            _answer(sock, {"ok": False, "kind": type(exc).__name__, "error": str(exc)})
            continue
        try:
            _answer(sock, {"ok": True, "bytes": size, "rows": rows}, fd)
        finally:
            os.close(fd)


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the notebook; EOF ends this one
    sock = socket.socket(fileno=int(argv[1]))
    parent = int(argv[2])
    if os.getppid() != parent:  # the parent died before we got here
        return 0
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the parent went away
        serve(sock, parent)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
