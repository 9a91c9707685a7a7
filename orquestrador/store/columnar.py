"""The jobs table as Arrow columns, for ``resultados()``: the queries and who runs them.

A million rows through ``sqlite3`` cost seconds in object creation alone; Arrow's SQLite driver
fills Arrow arrays in C. It bundles a SQLite library of its own, so it runs in the reader process
(:mod:`orquestrador.store.reader`), never in the orchestrator's. Imported lazily, with pandas:
workers never load pyarrow.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from orquestrador.store import reader

# The columns read, each with a typed value for the sentinel row that leads every query.
_READ_COLUMNS = [
    ("correlation_id", "'-'"), ("message_id", "'-'"), ("alvo", "'-'"), ("tipo_evento", "'-'"),
    ("estado", "'-'"), ("tentativa", "0"), ("worker", "'-'"), ("enviado_em", "0.0"),
    ("iniciado_em", "0.0"), ("concluido_em", "0.0"), ("execucao", "0.0"), ("erro", "'-'"),
    ("payload", "'-'"), ("resultado", "'-'"),
]  # fmt: skip


def read_jobs(path: Path, where: str = "", args: Sequence[Any] = ()) -> pa.Table:
    """The jobs table as Arrow columns, without one Python object per value.

    A million rows through ``sqlite3`` cost seconds in object creation alone; the ADBC SQLite
    driver fills Arrow arrays in C. It bundles a SQLite library of its own, so it runs in the
    reader process (:mod:`orquestrador.reader`), never here. It infers each column's type from
    the values it sees first, so a typed sentinel row leads the result (and is dropped): a column
    that starts with NULLs still reads as text or float. Without the driver, the standard
    library reads the same, in this process.
    """
    names = [name for name, _ in _READ_COLUMNS]
    sentinel = ", ".join(f"{value} AS {name}" for name, value in _READ_COLUMNS)
    queries = []
    ranged = f"{where} AND rowid >= ? AND rowid < ?" if where else " WHERE rowid >= ? AND rowid < ?"
    for lo, hi in _rowid_ranges(path):
        body = f"SELECT 1 AS _real, {', '.join(names)} FROM jobs{ranged} ORDER BY rowid"
        sql = f"SELECT * FROM (SELECT 0 AS _real, {sentinel}) UNION ALL SELECT * FROM ({body})"
        queries.append((sql, [*args, lo, hi]))
    try:
        tables = reader.shared.query_many(path, queries, {"adbc.sqlite.query.batch_rows": "65536"})
    except reader.DriverMissing:  # the driver is a dependency; this keeps trimmed installs working
        return read_jobs_stdlib(path, where, args)
    return pa.concat_tables([_without_sentinel(t) for t in tables]).drop_columns(["_real"])


def _rowid_ranges(path: Path, rows_per_part: int = 200_000) -> list[tuple[int, int]]:
    """Rowid ranges to read side by side, one per core (up to 4); one range for a small store."""
    with closing(sqlite3.connect(path)) as conn:
        lo, hi = conn.execute("SELECT MIN(rowid), MAX(rowid) FROM jobs").fetchone()
    if lo is None:
        return [(0, 1)]
    span = hi + 1 - lo
    parts = max(1, min(os.cpu_count() or 1, 4, span // rows_per_part))
    step = -(-span // parts)
    return [(lo + i * step, min(hi + 1, lo + (i + 1) * step)) for i in range(parts)]


def _without_sentinel(table: pa.Table) -> pa.Table:
    real = table.column("_real")
    if real[0].as_py() == 0 and pc.sum(real).as_py() == table.num_rows - 1:
        return table.slice(1)  # the sentinel came first, as SQLite runs UNION ALL in order: no copy
    return table.filter(pc.equal(real, pa.scalar(1)))


def read_jobs_stdlib(path: Path, where: str = "", args: Sequence[Any] = ()) -> pa.Table:
    """:func:`read_jobs` through Python's ``sqlite3``: slower, and the same table."""
    names = [name for name, _ in _READ_COLUMNS]
    sql = f"SELECT 1 AS _real, {', '.join(names)} FROM jobs{where} ORDER BY rowid"
    with closing(sqlite3.connect(path)) as conn:
        rows = conn.execute(sql, list(args)).fetchall()
    columns = list(zip(*rows, strict=True))[1:] if rows else [()] * len(names)
    types = {"tentativa": pa.int64(), "enviado_em": pa.float64(), "iniciado_em": pa.float64(),
             "concluido_em": pa.float64(), "execucao": pa.float64()}  # fmt: skip
    arrays = {n: pa.array(c, type=types.get(n, pa.string())) for n, c in zip(names, columns, strict=True)}
    return pa.table(arrays)
