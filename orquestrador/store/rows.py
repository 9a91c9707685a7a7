"""What a job row holds: the row type, the filter every jobs query shares, and the values a
result envelope puts in its job's row."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from orquestrador.envelope import Envelope


@dataclass(frozen=True)
class JobRow:
    """One job as :meth:`Store.job` returns it: result and error parsed from their JSON."""

    message_id: str
    correlation_id: str
    tipo_evento: str
    alvo: str | None
    estado: str
    enviado_em: float | None
    iniciado_em: float | None
    concluido_em: float | None
    tentativa: int | None
    worker: str | None
    resultado: dict[str, Any] | None
    erro: dict[str, Any] | None


def jobs_filter(
    *,
    alvo: str | None = None,
    estado: str | Sequence[str] | None = None,
    desde: float | None = None,
    ate: float | None = None,
    correlation_id: str | None = None,
    lote: str | None = None,
    agenda: str | None = None,
) -> tuple[str, list[Any]]:
    """The WHERE clause of a jobs query, shared by row reads and the columnar reader."""
    where: list[str] = []
    args: list[Any] = []
    if alvo is not None:
        where.append("alvo = ?")
        args.append(alvo)
    if estado is not None:
        states = [estado] if isinstance(estado, str) else list(estado)
        where.append(f"estado IN ({','.join('?' * len(states))})")
        args.extend(states)
    if desde is not None:
        where.append("COALESCE(enviado_em, concluido_em) >= ?")
        args.append(desde)
    if ate is not None:
        where.append("COALESCE(enviado_em, concluido_em) < ?")
        args.append(ate)
    if correlation_id is not None:
        where.append("correlation_id = ?")
        args.append(correlation_id)
    if lote is not None:
        where.append("lote = ?")
        args.append(lote)
    if agenda is not None:
        where.append("agenda = ?")
        args.append(agenda)
    return (" WHERE " + " AND ".join(where) if where else ""), args


def estado_of(env: Envelope) -> str:
    if env.status == "erro":
        return "dead-lettered" if env.erro is not None and env.erro.extras.get("fila_dlq") else "erro"
    return "ok"


def run_times(env: Envelope) -> tuple[float | None, float | None]:
    """The attempt's start (epoch seconds) and run time a worker put on its result, if sane.

    Optional on the wire: results from older workers, or published by hand, have neither.
    """
    extras = env.extras
    started: float | None = None
    if isinstance(extras.get("iniciado_em"), str):
        try:
            moment = datetime.fromisoformat(extras["iniciado_em"])
        except ValueError:
            moment = None
        if moment is not None:  # the wire is UTC; a time without its zone is read as UTC too
            started = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    ran = extras.get("duracao")
    if isinstance(ran, int | float) and not isinstance(ran, bool) and 0 <= ran < float("inf"):
        return started, float(ran)
    return started, None


def request_of(tipo_resultado: str) -> str:
    return tipo_resultado.replace("resultado_", "iniciar_")


def job_row(row: sqlite3.Row) -> JobRow:
    return JobRow(
        message_id=row["message_id"], correlation_id=row["correlation_id"],
        tipo_evento=row["tipo_evento"], alvo=row["alvo"], estado=row["estado"],
        enviado_em=row["enviado_em"], iniciado_em=row["iniciado_em"],
        concluido_em=row["concluido_em"], tentativa=row["tentativa"], worker=row["worker"],
        resultado=json.loads(row["resultado"]) if row["resultado"] else None,
        erro=json.loads(row["erro"]) if row["erro"] else None,
    )  # fmt: skip
