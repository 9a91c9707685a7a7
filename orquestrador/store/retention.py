"""How long finished jobs and dead letters are kept, so neither the store nor the broker grows forever.

Nothing is ever removed unless a limit is configured: ``ORQ_RETENTION_AGE`` /
``ORQ_RETENTION_JOBS`` (or ``Orquestrador(retencao=Retencao(...))``) for the store, and
``ORQ_DLQ_MAX_AGE`` / ``ORQ_DLQ_MAX_MESSAGES`` for dead-letter queues on the broker
(the adapters' own business, not this module's).

Pruning only touches finished jobs (ok, erro, dead-lettered) of chains and batches with no
unfinished job, so a running pipeline never loses its parents nor a running batch its count.
It deletes set-wise, a chunk of jobs per short write transaction, so the collector keeps
recording results while a big store is pruned.
Freed pages are not returned to the file system (that needs a ``VACUUM``, which rewrites the
whole file under an exclusive lock): SQLite reuses them for new rows, so the file stops growing.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass

from orquestrador.errors import ConfigError
from orquestrador.settings import parse_count, parse_duration

ENV_RETENTION_AGE = "ORQ_RETENTION_AGE"
ENV_RETENTION_JOBS = "ORQ_RETENTION_JOBS"

DEFAULT_INTERVAL = 600.0


def _env(name: str) -> str | None:
    return os.environ.get(name) or None


@dataclass(frozen=True)
class Retencao:
    """What the store keeps: finished jobs younger than ``max_age`` and at most ``max_jobs`` of them.

    ``max_age`` is seconds or a duration string (``"7d"``); None for either means no such limit,
    and with both None nothing is ever pruned. ``interval`` is how often a running orchestrator
    applies the policy.
    """

    max_age: float | str | None = None
    max_jobs: int | None = None
    interval: float = DEFAULT_INTERVAL

    def __post_init__(self) -> None:
        if self.max_age is not None:
            object.__setattr__(self, "max_age", parse_duration(self.max_age, "retencao max_age"))
        if self.max_jobs is not None:
            object.__setattr__(self, "max_jobs", parse_count(self.max_jobs, "retencao max_jobs"))
        if self.interval <= 0:
            raise ConfigError(f"retencao interval={self.interval!r} must be a positive number of seconds")

    @property
    def active(self) -> bool:
        return self.max_age is not None or self.max_jobs is not None

    @classmethod
    def from_env(cls) -> Retencao:
        age, jobs = _env(ENV_RETENTION_AGE), _env(ENV_RETENTION_JOBS)
        return cls(
            max_age=parse_duration(age, ENV_RETENTION_AGE) if age else None,
            max_jobs=parse_count(jobs, ENV_RETENTION_JOBS) if jobs else None,
        )


@dataclass(frozen=True)
class PruneReport:
    """Rows deleted per table; ``protected`` finished jobs were old enough but their chain is not done."""

    jobs: int = 0
    envelopes: int = 0
    eventos: int = 0
    partes: int = 0
    protected: int = 0
    reusable_bytes: int = 0

    def __add__(self, other: PruneReport) -> PruneReport:
        return PruneReport(
            self.jobs + other.jobs, self.envelopes + other.envelopes, self.eventos + other.eventos,
            self.partes + other.partes, other.protected, other.reusable_bytes,
        )  # fmt: skip


# -- SQL ---------------------------------------------------------------------------------------

_FINAL = "estado IN ('ok', 'erro', 'dead-lettered')"
# A finished job below the bound, of a chain without unfinished jobs (found by jobs_correlation).
_PRUNABLE = (
    f"concluido_em IS NOT NULL AND (concluido_em, rowid) < (?, ?) AND {_FINAL}"
    " AND NOT EXISTS (SELECT 1 FROM jobs u WHERE u.correlation_id = jobs.correlation_id"
    " AND u.estado NOT IN ('ok', 'erro', 'dead-lettered'))"
    # Nor a job of a batch still running: Lote.wait counts the batch's final jobs in the store.
    " AND (lote IS NULL OR NOT EXISTS (SELECT 1 FROM jobs b WHERE b.lote = jobs.lote"
    " AND b.estado IN ('unknown', 'queued', 'running')))"
)
_PICK = (
    "INSERT INTO temp.orq_prune (message_id, correlation_id, result_id, concluido_em, jrowid)"
    f" SELECT message_id, correlation_id, result_id, concluido_em, rowid FROM jobs WHERE {_PRUNABLE}"
    " AND (concluido_em, rowid) > (?, ?) ORDER BY concluido_em, rowid LIMIT ?"
)
_PICKED = "SELECT message_id FROM temp.orq_prune"
_CHAINS = "SELECT correlation_id FROM temp.orq_prune"
# Rows of the picked jobs, by primary key where there is one: the request envelope (the job's
# own id), its final result (jobs.result_id) and its partial results (partes.message_id).
_DELETES = {
    "envelopes": "DELETE FROM envelopes WHERE message_id IN (SELECT message_id FROM temp.orq_prune"
    " UNION ALL SELECT result_id FROM temp.orq_prune WHERE result_id IS NOT NULL"
    f" UNION ALL SELECT message_id FROM partes WHERE job_id IN ({_PICKED}))",
    "partes": f"DELETE FROM partes WHERE job_id IN ({_PICKED})",
    "eventos": f"DELETE FROM eventos WHERE correlation_id IN ({_CHAINS}) AND message_id IN ({_PICKED})",
    "jobs": "DELETE FROM jobs WHERE rowid IN (SELECT jrowid FROM temp.orq_prune)",
}
# Then whatever is left of chains that no longer have any job (other result copies, children
# announced but never recorded as jobs): looked up only for those chains.
_GONE = (
    "SELECT DISTINCT correlation_id FROM temp.orq_prune p"
    " WHERE NOT EXISTS (SELECT 1 FROM jobs j WHERE j.correlation_id = p.correlation_id)"
)
_ORPHANS = {
    table: f"DELETE FROM {table} WHERE correlation_id IN ({_GONE})" for table in ("eventos", "envelopes")
}
_TEMP = (
    "CREATE TEMP TABLE IF NOT EXISTS orq_prune (message_id TEXT PRIMARY KEY, correlation_id TEXT,"
    " result_id TEXT, concluido_em REAL, jrowid INTEGER)"
)
# Made by the first prune, so stores without retention pay nothing for them on each write.
INDEXES = (
    "CREATE INDEX IF NOT EXISTS jobs_concluido ON jobs(concluido_em)",
    "CREATE INDEX IF NOT EXISTS jobs_lote_estado ON jobs(lote, estado) WHERE lote IS NOT NULL",
)


def bound(conn: sqlite3.Connection, max_age: float | None, max_jobs: int | None) -> tuple[float, int] | None:
    """The (concluido_em, rowid) below which finished jobs go; None when nothing is to go."""
    bounds: list[tuple[float, int]] = []
    if max_age is not None:
        bounds.append((time.time() - max_age, 0))
    if max_jobs is not None:
        row = conn.execute(
            "SELECT concluido_em, rowid FROM jobs WHERE concluido_em IS NOT NULL"
            " ORDER BY concluido_em DESC, rowid DESC LIMIT 1 OFFSET ?",
            (max_jobs - 1,),
        ).fetchone()
        if row is not None:  # the max_jobs-th newest finished job stays, older ones go
            bounds.append((row[0], row[1]))
    return max(bounds) if bounds else None


def count_prunable(conn: sqlite3.Connection, limit: tuple[float, int]) -> int:
    return int(conn.execute(f"SELECT COUNT(*) FROM jobs WHERE {_PRUNABLE}", limit).fetchone()[0])


def count_protected(conn: sqlite3.Connection, limit: tuple[float, int]) -> int:
    """Finished jobs below the bound still there after pruning: their chain has unfinished jobs."""
    sql = (
        "SELECT COUNT(*) FROM jobs WHERE concluido_em IS NOT NULL"
        f" AND (concluido_em, rowid) < (?, ?) AND {_FINAL}"
    )
    return int(conn.execute(sql, limit).fetchone()[0])


def prune_chunk(
    conn: sqlite3.Connection, limit: tuple[float, int], after: tuple[float, int], chunk: int
) -> tuple[PruneReport, tuple[float, int] | None]:
    """Delete one chunk inside the caller's write transaction; returns it and the cursor to go on from."""
    conn.execute(_TEMP)
    conn.execute("DELETE FROM temp.orq_prune")
    picked = conn.execute(_PICK, (*limit, *after, chunk)).rowcount
    if picked <= 0:
        return PruneReport(), None
    counts = dict.fromkeys(_DELETES, 0)
    for table, sql in _DELETES.items():
        counts[table] += conn.execute(sql).rowcount
    for table, sql in _ORPHANS.items():
        counts[table] += conn.execute(sql).rowcount
    last = conn.execute(
        "SELECT concluido_em, jrowid FROM temp.orq_prune ORDER BY concluido_em DESC, jrowid DESC LIMIT 1"
    ).fetchone()
    conn.execute("DELETE FROM temp.orq_prune")
    report = PruneReport(counts["jobs"], counts["envelopes"], counts["eventos"], counts["partes"])
    return report, ((last[0], last[1]) if picked >= chunk else None)


def reusable_bytes(conn: sqlite3.Connection) -> int:
    """Free pages SQLite will fill before it grows the file again."""
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    return int(free) * int(conn.execute("PRAGMA page_size").fetchone()[0])


StopCheck = Callable[[], bool]
