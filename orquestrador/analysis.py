"""Store rows to pandas DataFrames. Imported lazily: workers never load pandas."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

JOB_COLUMNS = [
    "correlation_id", "message_id", "alvo", "tipo_evento", "status", "tentativa", "worker",
    "enviado_em", "iniciado_em", "concluido_em", "duracao", "erro_tipo", "erro_mensagem",
]  # fmt: skip


def _times(values: Sequence[float | None]) -> pd.Series:
    return pd.to_datetime(pd.Series(values, dtype="float64"), unit="s", utc=True)


def jobs_frame(rows: Sequence[sqlite3.Row]) -> pd.DataFrame:
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in JOB_COLUMNS})
    erros = [json.loads(r["erro"]) if r["erro"] else {} for r in rows]
    frame = pd.DataFrame(
        {
            "correlation_id": [r["correlation_id"] for r in rows],
            "message_id": [r["message_id"] for r in rows],
            "alvo": [r["alvo"] for r in rows],
            "tipo_evento": [r["tipo_evento"] for r in rows],
            "status": pd.Categorical(
                [r["estado"] for r in rows],
                categories=["queued", "running", "ok", "erro", "dead-lettered"],
            ),
            "tentativa": pd.array([r["tentativa"] for r in rows], dtype="Int64"),
            "worker": [r["worker"] for r in rows],
            "enviado_em": _times([r["enviado_em"] for r in rows]),
            "iniciado_em": _times([r["iniciado_em"] for r in rows]),
            "concluido_em": _times([r["concluido_em"] for r in rows]),
            "erro_tipo": [e.get("tipo") for e in erros],
            "erro_mensagem": [e.get("mensagem") for e in erros],
        }
    )
    frame.insert(10, "duracao", frame["concluido_em"] - frame["enviado_em"])
    payloads = _flatten([r["payload"] for r in rows], "payload.")
    results = _flatten([r["resultado"] for r in rows], "resultado.")
    return pd.concat([frame, payloads, results], axis=1)


def _flatten(texts: Sequence[str | None], prefix: str) -> pd.DataFrame:
    data: list[dict[str, Any]] = [json.loads(t) if t else {} for t in texts]
    if not any(data):
        return pd.DataFrame(index=range(len(texts)))
    return pd.json_normalize(data, max_level=1).add_prefix(prefix)


def trace_frame(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    columns = ["momento", "tipo", "evento", "message_id", "causation_id", "alvo", "status",
               "tentativa", "worker", "detalhe"]  # fmt: skip
    frame = pd.DataFrame(rows, columns=columns)
    frame["momento"] = _times(list(frame["momento"]))
    return frame


METRIC_COLUMNS = ["alvo", "jobs", "ok", "erro", "dead_lettered", "taxa_erro", "p50", "p95", "p99"]


def metrics_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Per alvo counts, error rate and latency percentiles (seconds, finished jobs only)."""
    if frame.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in METRIC_COLUMNS})
    status = frame["status"].astype(str)
    seconds = frame["duracao"].dt.total_seconds()
    data = pd.DataFrame({"alvo": frame["alvo"], "status": status, "segundos": seconds})
    out = []
    for alvo, group in data.groupby("alvo", sort=True):
        ok = int((group["status"] == "ok").sum())
        erro = int((group["status"] == "erro").sum())
        dead = int((group["status"] == "dead-lettered").sum())
        finished = ok + erro + dead
        latency = group["segundos"].dropna()
        q = latency.quantile([0.5, 0.95, 0.99]) if len(latency) else pd.Series([None] * 3)
        out.append({
            "alvo": alvo, "jobs": len(group), "ok": ok, "erro": erro, "dead_lettered": dead,
            "taxa_erro": (erro + dead) / finished if finished else float("nan"),
            "p50": q.iloc[0], "p95": q.iloc[1], "p99": q.iloc[2],
        })  # fmt: skip
    return pd.DataFrame(out, columns=METRIC_COLUMNS)


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
