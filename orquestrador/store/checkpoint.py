"""WAL checkpoints in a thread of their own, never in a write.

SQLite copies its write-ahead log back into the database (a checkpoint) inside whichever commit
pushes the log past 1,000 pages. The orchestrator commits a lone launch or a small batch of
results on its event loop, so one commit in a few thousand held the loop for that copy: 100 ms
once every ~4.5 s at 500 launches a second, which was the whole p99 of the latency bench on NATS
(launch leg p99 56 ms, then 8 ms with the checkpoint moved out).

So a store's connections are opened with ``wal_autocheckpoint=0`` and a daemon thread of the
store checkpoints (``PASSIVE``: it never waits for readers or writers, and writers append to the
log meanwhile) whenever the log has grown past :data:`WAL_LIMIT`; ``journal_size_limit=0`` makes
the next writer cut the log file back once it was copied, so its size says when to look again.
The thread starts with the store's first write and ends with :meth:`Checkpointer.stop`; a
failed checkpoint is logged and tried again at the next look; an unexpected error is logged and
the next write starts a new thread.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger("orquestrador.store")

WAL_LIMIT = 4 * 1024 * 1024  # bytes of log before a checkpoint: SQLite's own default, 1,000 pages
LOOK_EVERY = 0.2  # seconds between two looks at the log's size (one stat call)


class Checkpointer:
    """One daemon thread per store that writes; see the module."""

    def __init__(self, path: Path, timeout: float) -> None:
        self.path = path
        self.wal = path.with_name(path.name + "-wal")
        self.timeout = timeout
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._guard = threading.Lock()

    def ensure_running(self) -> None:
        """Start the thread if it is not running (first write, after a fork, after a stop)."""
        thread = self._thread
        if thread is not None and thread.is_alive():
            return
        with self._guard:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="orq-store-checkpoint", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """End the thread after one last checkpoint; a later write starts it again."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while True:
                stopping = self._stop.wait(LOOK_EVERY)
                if stopping or self._wal_size() > WAL_LIMIT:
                    conn = conn or sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
                    self._checkpoint(conn)
                if stopping:
                    return
        except Exception:  # never silently: logged, and the next write starts a new thread
            log.exception("the store's checkpoint thread stopped; the next write restarts it")
        finally:
            if conn is not None:
                conn.close()

    def _wal_size(self) -> int:
        try:
            return self.wal.stat().st_size
        except OSError:  # no log yet, or the store was removed
            return 0

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:  # busy, or the disk: the log keeps growing until it works
            log.warning("checkpoint of %s failed (%s); trying again in %.1fs", self.path, exc, LOOK_EVERY)


__all__ = ["LOOK_EVERY", "WAL_LIMIT", "Checkpointer"]
