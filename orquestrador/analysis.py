"""Store rows to pandas DataFrames. Imported lazily: workers never load pandas."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
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
