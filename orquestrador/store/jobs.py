"""The orchestrator's record of every job: SQLite under ``.orquestrador/`` by default.

Results go to disk, not to lists in memory, so memory stays flat however many jobs run and a
restarted notebook still sees earlier results. A job is recorded once per ``message_id`` and
its result once, however often a result is redelivered; states only move forward.

Why one class of about 400 lines: every write and read of the four tables goes through one
connection per thread and one writer lock, and the SQL of each stays beside the method that
runs it. The schema is :mod:`.schema`, row values :mod:`.rows`, pruning :mod:`.retention`.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from orquestrador.envelope import Envelope, to_json
from orquestrador.eventos import EventoJob
from orquestrador.store import retention, schema
from orquestrador.store.checkpoint import Checkpointer
from orquestrador.store.rows import JobRow, estado_of, job_row, jobs_filter, request_of, run_times
from orquestrador.store.schema import Transaction, unusable
from orquestrador.vocabulary import ESTADOS


class Store:
    """Thread-safe: one SQLite connection per thread, WAL so readers never block the writer."""

    def __init__(self, path: Path | str, *, timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.timeout = timeout  # seconds a write waits for another process's lock
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._checkpoints = Checkpointer(self.path, timeout)
        try:
            schema.create(self._conn())
        except sqlite3.Error as exc:
            self.close()
            raise unusable(self.path, exc) from None

    def check_writable(self) -> None:
        """Refuse, at start, a store that can be read but not written (e.g. a read-only file).

        Without it an orchestrator starts and then fails at its first launch, or leaves results
        unrecorded. A write that is rolled back: nothing changes.
        """
        conn = self._conn()
        try:
            with self._write():
                (version,) = conn.execute("PRAGMA user_version").fetchone()
                conn.execute(f"PRAGMA user_version = {int(version)}")
                raise _Probe
        except _Probe:
            return
        except sqlite3.Error as exc:
            raise unusable(self.path, exc) from None

    def _write(self) -> Transaction:
        """A write transaction; writers of this process queue on a lock, not in SQLite.

        SQLite's busy handler sleeps in steps of up to tens of milliseconds when another
        connection holds the write lock (the collector writes from a thread while launches
        write from the loop); a Python lock hands over the moment the other writer is done.
        """
        self._checkpoints.ensure_running()
        at_once = getattr(self._local, "at_once", False)
        return Transaction(self._conn(), self._write_lock, wait=not at_once, timeout=self.timeout)

    @contextlib.contextmanager
    def at_once(self) -> Iterator[None]:
        """Writes inside raise :class:`StoreBusy` instead of waiting for another writer: an event
        loop writes a few rows itself when the store is free (a thread hop costs more than they
        do), and hands them to a thread when it is not."""
        self._local.at_once = True
        try:
            yield
        finally:
            self._local.at_once = False

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = schema.connect(self.path, self.timeout)
            self._local.conn = conn
        return conn

    def close(self) -> None:
        """Close this thread's connection and checkpoint what is left of the log (a write from
        another thread afterwards starts the checkpoint thread again)."""
        self._checkpoints.stop()
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- writes ----------------------------------------------------------------------------

    def record_sent(
        self,
        envelopes: Sequence[Envelope],
        fila: str,
        *,
        lote: str | None = None,
        bodies: Sequence[bytes] | None = None,
    ) -> None:
        """Record launched jobs; ``bodies`` are their wire bytes, stored as sent (not re-encoded)."""
        now = time.time()
        with self._write() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO jobs (message_id, correlation_id, tipo_evento, alvo, fila,"
                " payload, estado, enviado_em, lote) VALUES (?, ?, ?, ?, ?, ?, 'queued', ?, ?)",
                [
                    (e.message_id, e.correlation_id, e.tipo_evento, e.alvo, fila,
                     json.dumps(e.payload), e.timestamp.timestamp(), lote)
                    for e in envelopes
                ],
            )  # fmt: skip
            self._insert_envelopes(conn, envelopes, now, bodies)

    def forget(self, message_ids: Iterable[str]) -> None:
        """Undo ``record_sent`` for envelopes the broker refused."""
        ids = [(m,) for m in message_ids]
        with self._write() as conn:
            conn.executemany("DELETE FROM jobs WHERE message_id = ?", ids)
            conn.executemany("DELETE FROM envelopes WHERE message_id = ?", ids)

    def record_results(
        self, results: Sequence[Envelope], bodies: Sequence[bytes] | None = None
    ) -> list[str]:
        """Store results; returns the message_ids of the jobs that reached a final state now."""
        finished: list[str] = []
        now = time.time()
        with self._write() as conn:
            self._insert_envelopes(conn, results, now, bodies)
            for env in results:
                if env.causation_id is None:
                    continue
                if env.extras.get("parcial"):
                    self._insert_part(conn, env, now)
                    continue
                if env.extras.get("filhos"):
                    self._insert_children(conn, env, now)
                estado = estado_of(env)
                iniciado_em, execucao = run_times(env)
                values = (
                    estado, env.timestamp.timestamp(), env.tentativa,
                    (env.extras.get("worker")), json.dumps(env.payload),
                    to_json(env.erro) if env.erro else None, env.message_id,
                    iniciado_em, execucao, _agenda_of(env),
                )  # fmt: skip
                cur = conn.execute(
                    "UPDATE jobs SET estado = ?, concluido_em = ?, tentativa = ?, worker = ?,"
                    " resultado = ?, erro = ?, result_id = ?, iniciado_em = COALESCE(?, iniciado_em),"
                    " execucao = ?, agenda = COALESCE(agenda, ?)"
                    " WHERE message_id = ? AND estado NOT IN ('ok', 'erro', 'dead-lettered')",
                    (*values, env.causation_id),
                )
                if cur.rowcount:
                    finished.append(env.causation_id)
                    continue
                # A job we did not launch (published by hand, or by another tool): keep it too.
                cur = conn.execute(
                    "INSERT OR IGNORE INTO jobs (estado, concluido_em, tentativa, worker, resultado,"
                    " erro, result_id, iniciado_em, execucao, agenda, message_id, correlation_id,"
                    " tipo_evento, alvo) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (*values, env.causation_id, env.correlation_id,
                     request_of(env.tipo_evento), env.alvo),
                )  # fmt: skip
                if cur.rowcount:
                    finished.append(env.causation_id)
        return finished

    def _insert_children(self, conn: sqlite3.Connection, parent: Envelope, now: float) -> None:
        """Jobs a pipeline launched from ``parent``: known (queued) before any of them runs."""
        children = [c for c in parent.extras["filhos"] if isinstance(c, dict) and c.get("message_id")]
        rows = []
        for c in children:
            sent = datetime.fromisoformat(c["timestamp"]).timestamp() if c.get("timestamp") else now
            rows.append((c["message_id"], parent.correlation_id, c.get("tipo_evento"), c.get("alvo"),
                         json.dumps(c.get("payload") or {}), sent, parent.message_id))  # fmt: skip
        conn.executemany(
            # A fast child may have answered before its parent's result got here: then complete it.
            "INSERT INTO jobs (message_id, correlation_id, tipo_evento, alvo, payload, estado,"
            " enviado_em, causation_id) VALUES (?, ?, ?, ?, ?, 'queued', ?, ?)"
            " ON CONFLICT(message_id) DO UPDATE SET causation_id = excluded.causation_id,"
            " payload = COALESCE(jobs.payload, excluded.payload),"
            " enviado_em = COALESCE(jobs.enviado_em, excluded.enviado_em)",
            rows,
        )
        conn.executemany(
            "INSERT OR IGNORE INTO envelopes (message_id, correlation_id, causation_id, tipo_evento, alvo,"
            " status, tentativa, timestamp, recorded_at, body) VALUES (?, ?, ?, ?, ?, NULL, NULL, ?, ?, ?)",
            [
                (r[0], r[1], r[6], r[2], r[3], r[5], now, json.dumps(c))
                for r, c in zip(rows, children, strict=True)
            ],
        )

    def chain(self, correlation_id: str) -> dict[str, int]:
        """Jobs of a chain by state; the chain is finished when every one is final."""
        rows = self._conn().execute(
            "SELECT estado, COUNT(*) FROM jobs WHERE correlation_id = ? GROUP BY estado", (correlation_id,)
        )
        return {estado: n for estado, n in rows}

    def _insert_part(self, conn: sqlite3.Connection, env: Envelope, now: float) -> None:
        conn.execute(
            "INSERT OR IGNORE INTO partes (message_id, job_id, correlation_id, alvo, parte, recebido_em,"
            " payload) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (env.message_id, env.causation_id, env.correlation_id, env.alvo,
             int(env.extras.get("parte") or 0), now, json.dumps(env.payload)),
        )  # fmt: skip

    def parts(self, job_id: str) -> list[dict[str, Any]]:
        rows = self._conn().execute("SELECT payload FROM partes WHERE job_id = ? ORDER BY parte", (job_id,))
        return [json.loads(r[0]) for r in rows]

    def record_events(self, events: Sequence[EventoJob]) -> None:
        with self._write() as conn:
            conn.executemany(
                # Events of other orchestrators' jobs share the subject; keep only ours.
                "INSERT INTO eventos (correlation_id, message_id, evento, alvo, worker, tentativa,"
                " at, detalhe) SELECT ?, ?, ?, ?, ?, ?, ?, ?"
                " WHERE EXISTS (SELECT 1 FROM jobs WHERE message_id = ?)",
                [
                    (e.correlation_id, e.message_id, e.evento, e.alvo, e.worker, e.tentativa,
                     e.at, json.dumps(e.detalhe, default=str), e.message_id)
                    for e in events
                ],
            )  # fmt: skip
            # A later attempt's start wins over an earlier one's; a retry puts the job back in
            # the queue (running counts only jobs that hold a worker's slot), unless its next
            # attempt already started: events of one batch may carry both.
            conn.executemany(
                "UPDATE jobs SET estado = 'running', iniciado_em = COALESCE(iniciado_em, ?),"
                " worker = ?, tentativa = ? WHERE message_id = ?"
                " AND (estado = 'queued' OR (estado = 'running' AND tentativa < ?))",
                [(e.at, e.worker, e.tentativa, e.message_id, e.tentativa)
                 for e in events if e.evento == "iniciado"],
            )  # fmt: skip
            conn.executemany(
                "UPDATE jobs SET estado = 'queued' WHERE message_id = ? AND estado = 'running'"
                " AND tentativa <= ?",
                [(e.message_id, e.tentativa) for e in events if e.evento == "retry"],
            )

    def _insert_envelopes(
        self,
        conn: sqlite3.Connection,
        envelopes: Sequence[Envelope],
        now: float,
        bodies: Sequence[bytes] | None = None,
    ) -> None:
        if bodies is None:
            texts = [to_json(e) for e in envelopes]
        else:
            texts = [b.decode("utf-8", "replace") for b in bodies]
        conn.executemany(
            "INSERT OR IGNORE INTO envelopes (message_id, correlation_id, causation_id,"
            " tipo_evento, alvo, status, tentativa, timestamp, recorded_at, body)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (e.message_id, e.correlation_id, e.causation_id, e.tipo_evento, e.alvo, e.status,
                 e.tentativa, e.timestamp.timestamp(), now, text)
                for e, text in zip(envelopes, texts, strict=True)
            ],
        )  # fmt: skip

    def prune(
        self,
        max_age: float | None = None,
        max_jobs: int | None = None,
        *,
        chunk: int = 1000,
        stop: retention.StopCheck | None = None,
    ) -> retention.PruneReport:
        """Delete finished jobs older than ``max_age`` seconds or beyond the newest ``max_jobs``.

        With their envelopes, events and parts; jobs of chains or batches that still have
        unfinished jobs stay. Each chunk is its own short transaction so results keep being
        recorded meanwhile; ``stop`` is asked between chunks (an orchestrator closing).
        Both None: a no-op.
        """
        if max_age is None and max_jobs is None:
            return retention.PruneReport()
        conn = self._conn()
        for index in retention.INDEXES:  # once per store: the oldest finished jobs, the N-th newest
            conn.execute(index)
        limit = retention.bound(conn, max_age, max_jobs)
        report = retention.PruneReport()
        if limit is not None:
            after: tuple[float, int] | None = (float("-inf"), 0)
            while after is not None and not (stop is not None and stop()):
                with self._write() as tx:
                    done, after = retention.prune_chunk(tx, limit, after, chunk)
                report = report + done
            protected = retention.count_protected(conn, limit)
            report = retention.PruneReport(report.jobs, report.envelopes, report.eventos, report.partes,
                                           protected, retention.reusable_bytes(conn))  # fmt: skip
        return report

    def prunable(self, max_age: float | None = None, max_jobs: int | None = None) -> int:
        """How many jobs ``prune`` would delete now (for a confirmation prompt)."""
        conn = self._conn()
        limit = retention.bound(conn, max_age, max_jobs)
        return 0 if limit is None else retention.count_prunable(conn, limit)

    # -- reads -----------------------------------------------------------------------------

    def job(self, message_id: str) -> JobRow | None:
        row = self._conn().execute("SELECT * FROM jobs WHERE message_id = ?", (message_id,))
        found = row.fetchone()
        return None if found is None else job_row(found)

    def jobs(
        self,
        *,
        alvo: str | None = None,
        estado: str | Sequence[str] | None = None,
        desde: float | None = None,
        ate: float | None = None,
        correlation_id: str | None = None,
    ) -> list[sqlite3.Row]:
        where, args = jobs_filter(
            alvo=alvo, estado=estado, desde=desde, ate=ate, correlation_id=correlation_id
        )
        return self._conn().execute(f"SELECT * FROM jobs{where} ORDER BY rowid", args).fetchall()

    def count_lote(self, lote: str) -> dict[str, int]:
        """Jobs of one batch by state, from the index: no list of ids kept anywhere."""
        sql = "SELECT estado, COUNT(*) FROM jobs WHERE lote = ? GROUP BY estado"
        rows = self._conn().execute(sql, (lote,))
        return {estado: n for estado, n in rows}

    def lotes(self) -> list[tuple[Any, ...]]:
        """One row per batch, in launch order: (lote, tipo_evento, alvo, jobs, queued, running, ok,
        erro, dead-lettered, first sent, last finished). Counted in SQLite, from the batch index."""
        counts = ", ".join(f"SUM(estado = '{estado}')" for estado in ESTADOS[1:])
        return self._conn().execute(
            f"SELECT lote, MIN(tipo_evento), MIN(alvo), COUNT(*), {counts}, MIN(enviado_em),"
            " MAX(concluido_em) FROM jobs WHERE lote IS NOT NULL GROUP BY lote ORDER BY MIN(rowid)"
        ).fetchall()

    def lote_jobs(
        self, lote: str, offset: int = 0, limit: int = -1
    ) -> list[tuple[str, str, str | None, str]]:
        """(message_id, correlation_id, alvo, tipo_evento) of a batch, in launch order."""
        return self._conn().execute(
            "SELECT message_id, correlation_id, alvo, tipo_evento FROM jobs WHERE lote = ?"
            " ORDER BY rowid LIMIT ? OFFSET ?",
            (lote, limit, offset),
        ).fetchall()

    def count_by_state(self, message_ids: Sequence[str] | None = None) -> dict[str, int]:
        if message_ids is None:
            rows = self._conn().execute("SELECT estado, COUNT(*) FROM jobs GROUP BY estado")
            return {r[0]: r[1] for r in rows}
        counts: dict[str, int] = {}
        for i in range(0, len(message_ids), 500):
            chunk = list(message_ids[i : i + 500])
            rows = self._conn().execute(
                f"SELECT estado, COUNT(*) FROM jobs WHERE message_id IN ({','.join('?' * len(chunk))})"
                " GROUP BY estado",
                chunk,
            )
            for estado, n in rows:
                counts[estado] = counts.get(estado, 0) + n
        return counts

    def trace(self, correlation_id: str) -> list[dict[str, Any]]:
        """Every envelope and lifecycle event of a chain, oldest first."""
        conn = self._conn()
        rows: list[dict[str, Any]] = []
        for r in conn.execute(
            "SELECT * FROM envelopes WHERE correlation_id = ? ORDER BY timestamp", (correlation_id,)
        ):
            body = json.loads(r["body"])
            rows.append({
                "momento": r["timestamp"], "tipo": "envelope", "evento": r["tipo_evento"],
                "message_id": r["message_id"], "causation_id": r["causation_id"],
                "alvo": r["alvo"], "status": r["status"], "tentativa": r["tentativa"],
                "worker": body.get("worker"), "detalhe": body.get("erro"),
            })  # fmt: skip
        for r in conn.execute(
            "SELECT * FROM eventos WHERE correlation_id = ? ORDER BY at", (correlation_id,)
        ):
            rows.append({
                "momento": r["at"], "tipo": "evento", "evento": r["evento"],
                "message_id": r["message_id"], "causation_id": None, "alvo": r["alvo"],
                "status": None, "tentativa": r["tentativa"], "worker": r["worker"],
                "detalhe": json.loads(r["detalhe"]) if r["detalhe"] else None,
            })  # fmt: skip
        rows.sort(key=lambda row: row["momento"])
        return rows

    # -- aggregate reads of the live views: their cost does not grow with the jobs shown -----

    def count_where(self, where: str, args: Sequence[Any]) -> dict[str, int]:
        """Jobs by state among those matching a :func:`jobs_filter` clause."""
        rows = self._conn().execute(f"SELECT estado, COUNT(*) FROM jobs{where} GROUP BY estado", args)
        return {r[0]: r[1] for r in rows}

    def finish_times(
        self, where: str, args: Sequence[Any], since: float
    ) -> tuple[float | None, float | None, int, int]:
        """(first send, last finish, finished since ``since``, finished) of the matching jobs."""
        sql = ("SELECT MIN(enviado_em), MAX(concluido_em), COALESCE(SUM(concluido_em >= ?), 0),"
               f" COUNT(concluido_em) FROM jobs{where}")  # fmt: skip
        first, last, recent, finished = self._conn().execute(sql, [since, *args]).fetchone()
        return first, last, int(recent), int(finished)

    def latest_errors(self, where: str, args: Sequence[Any], limit: int) -> list[dict[str, Any]]:
        """The newest failed jobs matching the clause: alvo, estado and erro (parsed)."""
        sql = f"SELECT alvo, estado, erro FROM jobs{where} ORDER BY rowid DESC LIMIT ?"
        rows = self._conn().execute(sql, [*args, limit]).fetchall()
        return [{"alvo": r["alvo"], "estado": r["estado"], "erro": json.loads(r["erro"]) if r["erro"] else {}}
                for r in rows]  # fmt: skip

    def waiting_queues(self) -> list[str]:
        """Queues that jobs of this store wait on (launched, not started)."""
        rows = self._conn().execute("SELECT DISTINCT fila FROM jobs WHERE estado = 'queued'")
        return sorted(r[0] for r in rows if r[0])


class _Probe(Exception):
    """Ends :meth:`Store.check_writable`'s transaction with a rollback."""


def _agenda_of(env: Envelope) -> str | None:
    """The schedule that fired this result's job (the worker copies it onto the result)."""
    agenda = env.extras.get("agenda")
    return agenda if isinstance(agenda, str) else None
