"""The store's write-ahead log is copied back by its own thread, never inside a write on the
event loop, and it stays bounded while a notebook launches and records for hours."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from orquestrador.envelope import nova
from orquestrador.store import Store
from orquestrador.store.checkpoint import WAL_LIMIT


def _launch(store: Store, n: int) -> list[str]:
    payloads = [{"url": f"http://x.test/{i}", "pad": "x" * 400} for i in range(n)]
    envelopes = [nova("iniciar_coleta", payload, alvo="a") for payload in payloads]
    store.record_sent(envelopes, "escavador_a")
    return [e.message_id or "" for e in envelopes]


def _wal(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


def test_the_log_stays_bounded_while_writes_go_on(tmp_path: Path):
    path = tmp_path / "store.sqlite"
    store = Store(path)
    try:
        ids: list[str] = []
        for _ in range(60):  # ~30 MiB of log without checkpoints
            ids += _launch(store, 500)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            _launch(store, 1)  # the writer after a full checkpoint cuts the log back
            if _wal(path) < WAL_LIMIT:
                break
            time.sleep(0.1)
        assert _wal(path) < WAL_LIMIT, f"the log is {_wal(path)} bytes, over {WAL_LIMIT}"
        assert store.count_by_state(ids) == {"queued": len(ids)}
    finally:
        store.close()


def test_a_commit_never_checkpoints_itself(tmp_path: Path):
    """The copy would hold the caller (the notebook's event loop) for ~100 ms every few
    thousand launches; it belongs to the store's thread."""
    path = tmp_path / "store.sqlite"
    store = Store(path)
    try:
        _launch(store, 1)
        conn = store._conn()
        assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        thread = store._checkpoints._thread
        assert thread is not None and thread.is_alive() and thread.name == "orq-store-checkpoint"
    finally:
        store.close()


def test_what_was_written_is_in_the_database_after_close(tmp_path: Path):
    path = tmp_path / "store.sqlite"
    store = Store(path)
    ids = _launch(store, 200)
    store.close()
    thread = store._checkpoints._thread
    assert thread is not None and not thread.is_alive(), "close() ends the store's thread"
    with sqlite3.connect(path) as conn:  # a plain client sees every row
        (count,) = conn.execute(
            f"SELECT COUNT(*) FROM jobs WHERE message_id IN ({','.join('?' * len(ids))})", ids
        ).fetchone()
    assert count == 200
