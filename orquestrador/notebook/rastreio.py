"""``rastreio(orq, correlation_id)``: a live timeline of one chain."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import ipywidgets as w

from orquestrador.notebook._live import erro_html, esc, ticker
from orquestrador.notebook.jobs import COLOURS, counts_html
from orquestrador.vocabulary import FINAIS

if TYPE_CHECKING:
    from orquestrador.facade import Orquestrador


class Rastreio:
    """Every envelope and worker event of the chain, redrawn while jobs of it are unfinished."""

    def __init__(self, orq: Orquestrador, correlation_id: str) -> None:
        self.orq = orq
        self.correlation_id = correlation_id
        self.status = w.HTML()
        self.timeline = w.HTML()
        self.widget = w.VBox([self.status, self.timeline])
        self.widget.add_class("orq-rastreio")
        self.finished = False
        self.refresh()
        if not self.finished:
            ticker(orq).add(self)

    def refresh(self) -> None:
        counts = self.orq.cadeia(self.correlation_id)
        rows = self.orq.trace(self.correlation_id)
        jobs = self.orq.chain_jobs(self.correlation_id)
        duracao = {
            r["message_id"]: (r["concluido_em"] - r["enviado_em"]) * 1000
            for r in jobs
            if r["concluido_em"] and r["enviado_em"]
        }
        conteudo = {r["message_id"]: (r["payload"], r["resultado"]) for r in jobs}
        self.status.value = f"chain <code>{esc(self.correlation_id)}</code>: {counts_html(counts)}"
        self.timeline.value = timeline_html(rows, duracao, conteudo)
        self.finished = bool(counts) and all(state in FINAIS for state in counts)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> Any:
        return self.widget._repr_mimebundle_(include=include, exclude=exclude)


def _job_id(row: dict[str, Any]) -> str:
    """The job a trace row belongs to: a result envelope is caused by the job's envelope."""
    if str(row["evento"]).startswith("resultado") and row.get("causation_id"):
        return str(row["causation_id"])
    return str(row["message_id"] or "")


def _detail(row: dict[str, Any], conteudo: dict[str, tuple[Any, Any]]) -> Any:
    """What a reader wants on each line: the payload sent, the page title or result, the error."""
    if row["detalhe"]:
        return row["detalhe"]
    payload, resultado = conteudo.get(_job_id(row), (None, None))
    evento = str(row["evento"])
    if evento.startswith("iniciar"):
        return payload
    if evento.startswith("resultado") and isinstance(resultado, dict):
        titulo = resultado.get("titulo")
        return titulo if isinstance(titulo, str) else resultado
    return None


def _detail_html(detail: Any) -> str:
    """Escaped detail; an error (or an event carrying one) shows with its traceback folded."""
    if isinstance(detail, dict):
        if "tipo" in detail and "mensagem" in detail:
            return erro_html(detail)
        if isinstance(detail.get("erro"), dict):
            rest = {k: v for k, v in detail.items() if k != "erro"}
            return erro_html(detail["erro"]) + (f" {esc(rest)}" if rest else "")
    return esc(detail)


def timeline_html(
    rows: list[dict[str, Any]],
    duracao: dict[str, float],
    conteudo: dict[str, tuple[Any, Any]] | None = None,
) -> str:
    """The trace as an HTML table; every value is escaped (details carry page and payload text)."""
    conteudo = conteudo or {}
    if not rows:
        return "<i>nothing recorded for this chain yet</i>"
    start = rows[0]["momento"]
    head = "".join(
        f"<th>{h}</th>"
        for h in ("+ms", "kind", "event", "alvo", "worker", "status", "attempt", "duration", "detail")
    )
    body = []
    for r in rows:
        status = r.get("status") or ""
        colour = COLOURS.get(status, "inherit")
        took = duracao.get(_job_id(r)) if str(r["evento"]).startswith("resultado") else None
        body.append(
            "<tr>"
            f"<td>{(r['momento'] - start) * 1000:.0f}</td><td>{esc(r['tipo'])}</td>"
            f"<td>{esc(r['evento'])}</td><td><code>{esc(r['alvo'])}</code></td>"
            f"<td>{esc(r['worker'])}</td><td style='color:{colour}'>{esc(status)}</td>"
            f"<td>{esc(r['tentativa'])}</td><td>{'' if took is None else f'{took:.0f} ms'}</td>"
            f"<td>{_detail_html(_detail(r, conteudo))}</td>"
            "</tr>"
        )
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def rastreio(orq: Orquestrador, correlation_id: str) -> Rastreio:
    """Build the live timeline of chain ``correlation_id``; display it in a cell."""
    return Rastreio(orq, correlation_id)
