"""Store rows to pandas DataFrames. Imported lazily: workers never load pandas.

Only frames are built here: every query is :mod:`orquestrador.store`'s (the Arrow columns of
``resultados()`` come from :mod:`orquestrador.store.columnar`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from orquestrador.store.stats import job_stats
from orquestrador.vocabulary import ESTADOS

JOB_COLUMNS = [
    "correlation_id", "message_id", "alvo", "tipo_evento", "status", "tentativa", "worker",
    "enviado_em", "iniciado_em", "concluido_em", "duracao", "espera", "execucao", "erro_tipo",
    "erro_mensagem",
]  # fmt: skip


_STATES = [s for s in ESTADOS if s != "unknown"]


def _times(values: pa.ChunkedArray[Any] | Sequence[float | None]) -> pd.Series:
    """Epoch seconds (REAL in SQLite) to datetime64[ns, UTC], NaT where missing."""
    if not isinstance(values, pa.ChunkedArray):
        return pd.to_datetime(pd.Series(list(values), dtype=float), unit="s", utc=True)
    nanos = pc.cast(pc.round(pc.multiply(values, 1e9)), pa.int64())
    return pd.Series(pc.cast(nanos, pa.timestamp("ns", tz="UTC")).to_pandas(), copy=False)


def _nullable_ints(arrow: pa.DataType) -> pd.api.extensions.ExtensionDtype | None:
    """Whole numbers with gaps as pandas' Int64 (``<NA>``), not as floats."""
    return pd.Int64Dtype() if arrow == pa.int64() else None


def _durations(seconds: pa.ChunkedArray[Any]) -> pd.Series:
    """Seconds (REAL in SQLite) to timedelta64[ns], NaT where missing."""
    nanos = pc.cast(pc.round(pc.multiply(seconds, 1e9)), pa.int64())
    return pd.Series(pc.cast(nanos, pa.duration("ns")).to_pandas(), copy=False)


def jobs_frame(table: pa.Table) -> pd.DataFrame:
    """One row per job: scalar columns typed, payload and result flattened into columns."""
    if table.num_rows == 0:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in JOB_COLUMNS})
    erro = _parse_json(table.column("erro"))
    frame = pd.DataFrame(
        {
            "correlation_id": table.column("correlation_id").to_pandas(),
            "message_id": table.column("message_id").to_pandas(),
            "alvo": table.column("alvo").to_pandas(),
            "tipo_evento": table.column("tipo_evento").to_pandas(),
            "status": pd.Series(table.column("estado").dictionary_encode().to_pandas())
            .cat.set_categories(_STATES),
            "tentativa": table.column("tentativa").to_pandas(types_mapper=_nullable_ints),
            "worker": table.column("worker").to_pandas(),
            "enviado_em": _times(table.column("enviado_em")),
            "iniciado_em": _times(table.column("iniciado_em")),
            "concluido_em": _times(table.column("concluido_em")),
            "erro_tipo": _field(erro, "tipo", table.num_rows),
            "erro_mensagem": _field(erro, "mensagem", table.num_rows),
        }
    )
    # duracao: sent to finished; espera: sent to the (last) attempt's start; execucao: that
    # attempt's run as the worker timed it (NaT for results of workers that did not say).
    frame.insert(10, "duracao", frame["concluido_em"] - frame["enviado_em"])
    frame.insert(11, "espera", frame["iniciado_em"] - frame["enviado_em"])
    frame.insert(12, "execucao", _durations(table.column("execucao")))
    payloads = _flatten(table.column("payload"), "payload.")
    results = _flatten(table.column("resultado"), "resultado.")
    return pd.concat([frame, payloads, results], axis=1)


def _field(parsed: pd.DataFrame, name: str, rows: int) -> pd.Series:
    if name in parsed.columns:
        return parsed[name]
    return pd.Series([None] * rows, dtype=object)


def _flatten(texts: pa.ChunkedArray[Any], prefix: str) -> pd.DataFrame:
    """json_normalize(max_level=1) semantics, parsed by Arrow's JSON reader in C++.

    Rows whose keys change type (a number here, a string there) cannot share an Arrow column;
    those columns fall back to Python's json + pandas.json_normalize, which accepts anything.
    """
    parsed = _parse_json(texts, levels=2)
    return parsed.add_prefix(prefix)


def _json_lines(texts: pa.ChunkedArray[Any]) -> pa.Buffer:
    """The column's JSON objects as one newline-delimited buffer, joined by Arrow, not per row."""
    # pyarrow-stubs 20 type neither a str fill value nor str separators beside an array
    joined = pc.binary_join_element_wise(pc.fill_null(texts, "{}"), "\n", "")  # type: ignore[type-var, call-overload]
    column = joined.combine_chunks()
    if pa.types.is_large_string(column.type):
        column = column.cast(pa.string())
    _, offsets, data = column.buffers()
    bounds = np.frombuffer(offsets, dtype=np.int32)[column.offset : column.offset + len(column) + 1]
    return cast(pa.Buffer, data[int(bounds[0]) : int(bounds[-1])])


def _parse_json(texts: pa.ChunkedArray[Any], levels: int = 1) -> pd.DataFrame:
    rows = len(texts)
    if texts.null_count == rows:
        return pd.DataFrame(index=range(rows))
    try:
        table = pa_json.read_json(
            pa.BufferReader(_json_lines(texts)),  # type: ignore[arg-type]  # pyarrow-stubs: any NativeFile
            read_options=pa_json.ReadOptions(block_size=1 << 24),
        )
        if table.num_rows != rows:  # a value that is not one JSON object (e.g. "null", "[]")
            raise pa.ArrowInvalid(f"{table.num_rows} objects for {rows} rows")
    except pa.ArrowInvalid:
        data_ = [json.loads(t) if t else {} for t in texts.to_pylist()]
        if not any(data_):
            return pd.DataFrame(index=range(rows))
        return pd.json_normalize(data_, max_level=levels - 1)
    if table.num_columns == 0:
        return pd.DataFrame(index=range(rows))
    for _ in range(levels - 1):
        table = table.flatten()
    frame = table.to_pandas()
    for column, field in zip(frame.columns, table.schema, strict=True):
        if pa.types.is_list(field.type) or pa.types.is_large_list(field.type):
            frame[column] = pd.Series(table.column(column).to_pylist(), dtype=object)
    return frame


LOTE_COLUMNS = ["lote", "tipo_evento", "alvo", "jobs", "queued", "running", "ok", "erro",
                "dead_lettered", "enviado_em", "concluido_em"]  # fmt: skip


def lotes_frame(rows: Sequence[Sequence[Any]]) -> pd.DataFrame:
    """Batches with their counts by state; ``concluido_em`` only once every job is final."""
    frame = pd.DataFrame([tuple(r) for r in rows], columns=LOTE_COLUMNS)
    for column in LOTE_COLUMNS[3:9]:
        frame[column] = frame[column].astype("int64")
    unfinished = frame["queued"] + frame["running"] > 0
    frame["enviado_em"] = _times(list(frame["enviado_em"]))
    frame["concluido_em"] = _times(list(frame["concluido_em"])).mask(unfinished)
    return frame


def trace_frame(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    columns = ["momento", "tipo", "evento", "message_id", "causation_id", "alvo", "status",
               "tentativa", "worker", "detalhe"]  # fmt: skip
    frame = pd.DataFrame(rows, columns=columns)
    frame["momento"] = _times(list(frame["momento"]))
    return frame


METRIC_COLUMNS = ["alvo", "jobs", "ok", "erro", "dead_lettered", "taxa_erro", "p50_s", "p95_s", "p99_s"]


def metrics_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Per alvo counts, error rate and latency percentiles, for people to read.

    Latencies are seconds (the ``_s`` in their names) rounded to the millisecond, the error
    rate a fraction rounded to 0.1 %; finished jobs only. The numbers are ``orq stats``'s
    (:func:`orquestrador.stats.job_stats`: nearest-rank percentiles).
    """
    if frame.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in METRIC_COLUMNS})
    alvos, states = frame["alvo"].tolist(), frame["status"].astype(str).tolist()
    sent, done = _epoch(frame["enviado_em"]), _epoch(frame["concluido_em"])
    out = []
    for s in job_stats(zip(alvos, states, sent, done, strict=True)):
        failed, finished = s["erro"] + s["dead_lettered"], s["ok"] + s["erro"] + s["dead_lettered"]
        out.append({
            **{c: s[c] for c in ("alvo", "jobs", "ok", "erro", "dead_lettered")},
            "taxa_erro": round(failed / finished, 3) if finished else float("nan"),
            "p50_s": _ms(s["p50"]), "p95_s": _ms(s["p95"]), "p99_s": _ms(s["p99"]),
        })  # fmt: skip
    return pd.DataFrame(out, columns=METRIC_COLUMNS)


def _epoch(times: pd.Series) -> list[float | None]:
    """datetime64 (UTC) back to epoch seconds, None where missing."""
    seconds = (times - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
    return [None if math.isnan(v) else v for v in seconds.tolist()]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None or pd.isna(seconds) else round(float(seconds), 3)


def to_parquet(frame: pd.DataFrame, path: Path) -> Path:
    """Parquet needs uniform column types: nested values (lists, dicts) become JSON text."""
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object:
            values = out[column]
            if values.map(lambda v: isinstance(v, (list, dict))).any():
                out[column] = values.map(
                    lambda v: (
                        json.dumps(v, ensure_ascii=False, default=str) if isinstance(v, (list, dict)) else v
                    )
                )
    path.parent.mkdir(parents=True, exist_ok=True)
    out.to_parquet(path, index=False)
    return path
