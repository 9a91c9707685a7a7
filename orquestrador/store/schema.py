"""The store's tables, how a connection to them is opened, and how a write transaction runs.

Every table the toolkit keeps is declared here, and stores written by older versions are
brought up to date here, so a reader of the schema has one place to look.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from orquestrador.errors import ConfigError

TABLES = """
CREATE TABLE IF NOT EXISTS jobs (
    message_id TEXT PRIMARY KEY,
    correlation_id TEXT NOT NULL,
    tipo_evento TEXT NOT NULL,
    alvo TEXT,
    fila TEXT,
    payload TEXT,
    estado TEXT NOT NULL,
    enviado_em REAL,
    iniciado_em REAL,
    concluido_em REAL,
    tentativa INTEGER,
    worker TEXT,
    resultado TEXT,
    erro TEXT,
    result_id TEXT,
    causation_id TEXT,
    lote TEXT,
    execucao REAL,
    agenda TEXT
);
CREATE INDEX IF NOT EXISTS jobs_correlation ON jobs(correlation_id);
CREATE INDEX IF NOT EXISTS jobs_alvo_estado ON jobs(alvo, estado);
CREATE TABLE IF NOT EXISTS envelopes (
    message_id TEXT PRIMARY KEY,
    correlation_id TEXT NOT NULL,
    causation_id TEXT,
    tipo_evento TEXT NOT NULL,
    alvo TEXT,
    status TEXT,
    tentativa INTEGER,
    timestamp REAL NOT NULL,
    recorded_at REAL NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS envelopes_correlation ON envelopes(correlation_id);
CREATE TABLE IF NOT EXISTS eventos (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    correlation_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    evento TEXT NOT NULL,
    alvo TEXT,
    worker TEXT,
    tentativa INTEGER,
    at REAL NOT NULL,
    detalhe TEXT
);
CREATE INDEX IF NOT EXISTS eventos_correlation ON eventos(correlation_id);
CREATE TABLE IF NOT EXISTS partes (
    message_id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    alvo TEXT,
    parte INTEGER NOT NULL,
    recebido_em REAL NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS partes_job ON partes(job_id, parte);
"""

# Columns added after 0.1: (column, declaration), added to older stores when they are opened.
_ADDED_COLUMNS = (
    ("causation_id", "TEXT"),  # before pipelines existed
    ("lote", "TEXT"),  # before batches were tagged
    ("execucao", "REAL"),  # before results carried their run time
    ("agenda", "TEXT"),  # before schedules: the schedule a job was fired by
)
_LATER_INDEXES = (
    "CREATE INDEX IF NOT EXISTS jobs_causation ON jobs(causation_id)",
    "CREATE INDEX IF NOT EXISTS jobs_lote ON jobs(lote) WHERE lote IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS jobs_agenda ON jobs(agenda) WHERE agenda IS NOT NULL",
)


def create(conn: sqlite3.Connection) -> None:
    """Create the tables, or bring a store written by an older version up to date."""
    conn.executescript(TABLES)
    columns = {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}
    for column, declaration in _ADDED_COLUMNS:
        if column not in columns:
            conn.execute(f"ALTER TABLE jobs ADD COLUMN {column} {declaration}")
    for index in _LATER_INDEXES:
        conn.execute(index)


def connect(path: Path, timeout: float) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL so readers never block the
    writer, and no checkpoint inside a commit (:mod:`.checkpoint` runs them in a thread)."""
    conn = sqlite3.connect(path, timeout=timeout, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("PRAGMA journal_size_limit=0")
    conn.row_factory = sqlite3.Row
    return conn


def unusable(path: Path, exc: sqlite3.Error) -> ConfigError:
    """A store that cannot be used, as a ConfigError naming the file and what to do about it."""
    text = str(exc)
    if "not a database" in text or "malformed" in text:
        fix = "it is not an orquestrador store, or it is damaged: move it away (a new one is created)"
    elif "readonly" in text or "read-only" in text or "unable to open" in text:
        fix = "make the file and its directory writable by this user"
    elif "locked" in text:
        fix = "another process holds it locked: close that process"
    else:
        fix = "check the file"
    return ConfigError(
        f"cannot use the store {path} ({text}): {fix}, or set ORQ_HOME (or home=) to another directory"
    )


class StoreBusy(Exception):
    """Another writer holds the store this instant (a write inside :meth:`Store.at_once`)."""


class Transaction:
    """``with Transaction(conn, lock) as conn:`` — BEGIN IMMEDIATE under the process's writer lock.

    ``wait=False``: raise :class:`StoreBusy` at once, instead of waiting, when another thread of
    this process or another process is writing (the caller writes in a thread then).
    """

    def __init__(self, conn: sqlite3.Connection, lock: threading.Lock, *, wait: bool = True,
                 timeout: float = 0.0) -> None:  # fmt: skip
        self.conn = conn
        self.lock = lock
        self.wait = wait
        self.timeout = timeout  # the connection's busy timeout, restored after a BEGIN that did not wait

    def __enter__(self) -> sqlite3.Connection:
        if not self.lock.acquire(blocking=self.wait):
            raise StoreBusy
        try:
            if self.wait:
                self.conn.execute("BEGIN IMMEDIATE")
            else:
                self._begin_at_once()
        except BaseException:
            self.lock.release()
            raise
        return self.conn

    def _begin_at_once(self) -> None:
        self.conn.execute("PRAGMA busy_timeout = 0")  # SQLite's busy handler would sleep instead
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise StoreBusy from exc
            raise
        finally:
            self.conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")

    def __exit__(self, exc_type: object, *_: object) -> None:
        try:
            self.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")
        finally:
            self.lock.release()
