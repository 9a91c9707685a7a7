"""Live progress widgets for ``Job`` and ``Lote`` shown as a cell's value."""

from __future__ import annotations

from typing import TYPE_CHECKING

import ipywidgets as w

from orquestrador.notebook._live import CLOSED, erro_html, esc, ticker
from orquestrador.vocabulary import ESTADOS, FALHAS, FINAIS

if TYPE_CHECKING:
    from orquestrador.facade import Job, Lote

COLOURS = {"ok": "#1a7f37", "erro": "#b00", "dead-lettered": "#b00", "running": "#9a6700"}
ORDER = [*ESTADOS[1:], ESTADOS[0]]  # unknown last: it is the least interesting


def counts_html(counts: dict[str, int]) -> str:
    parts = []
    for state in ORDER + sorted(set(counts) - set(ORDER)):
        n = counts.get(state, 0)
        if n:
            colour = COLOURS.get(state, "#555")
            parts.append(f"<b style='color:{colour}'>{esc(state)}</b> {n}")
    return " · ".join(parts) or "no jobs yet"


class JobView:
    """One job: status, attempt, duration, the title or result, or the error — escaped."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.status = w.HTML()
        self.widget = w.VBox([self.status])
        self.finished = False
        self.refresh()
        if not self.finished:
            ticker(job.orquestrador).add(self)

    def refresh(self) -> None:
        row = self.job.record()
        estado = "unknown" if row is None else row.estado
        colour = COLOURS.get(estado, "#555")
        lines = [
            f"<b>{esc(self.job.tipo_evento)}</b> → <code>{esc(self.job.alvo)}</code> "
            f"<b style='color:{colour}'>{esc(estado)}</b>",
            f"<small>correlation_id <code>{esc(self.job.correlation_id)}</code></small>",
        ]
        if row is not None:
            if row.tentativa:
                lines.append(f"attempt {row.tentativa}" + (f" on {esc(row.worker)}" if row.worker else ""))
            if row.concluido_em and row.enviado_em:
                lines.append(f"took {(row.concluido_em - row.enviado_em) * 1000:.0f} ms")
            if row.resultado:
                title = row.resultado.get("titulo")
                shown = title if isinstance(title, str) else row.resultado
                lines.append(f"result: {esc(shown)}")
            if row.erro:
                lines.append(erro_html(row.erro))
        self.status.value = "<br>".join(lines)
        self.finished = estado in FINAIS

    def mark_closed(self) -> None:
        self.status.value += f"<br><i>{CLOSED}</i>"


class LoteView:
    """A batch: its id and how to reopen it, a progress bar, counts, throughput and ETA."""

    def __init__(self, lote: Lote) -> None:
        self.lote = lote
        self.bar = w.IntProgress(value=0, min=0, max=max(1, len(lote)), description="0%")
        self.header = w.HTML(reopen_html(lote.id))
        self.status = w.HTML()
        self.widget = w.VBox([self.header, self.bar, self.status])
        self.widget.add_class("orq-lote")
        self.shown = (self.bar, self.status)  # re-sent on idle redraws, see Ticker._draw
        self.finished = False
        self.refresh()
        if not self.finished:
            ticker(lote.orquestrador).add(self)

    def refresh(self) -> None:
        counts = self.lote.contagem()
        total = len(self.lote)
        done = sum(counts.get(s, 0) for s in FINAIS)
        rate = self.lote.orquestrador.throughput(lote=self.lote.id, remaining=total - done)
        self.bar.value = done
        self.bar.description = f"{100 * done // max(1, total)}%"
        failed = sum(counts.get(s, 0) for s in FALHAS)
        self.bar.bar_style = "danger" if failed else ("success" if done == total else "info")
        self.status.value = f"{done}/{total} done · {counts_html(counts)} · {rate.html()}"
        self.finished = done == total

    def mark_closed(self) -> None:
        self.status.value += f"<br><i>{CLOSED}</i>: reopen the batch from a new one"


def reopen_html(lote_id: str) -> str:
    """The batch's id, and the line that finds it again after a kernel restart (click selects it)."""
    line = f'orq.lote("{lote_id}")'
    return (
        f"<small>lote <code>{esc(lote_id)}</code> · reopen with "
        f"<code class='orq-reopen' style='user-select:all'>{esc(line)}</code></small>"
    )


def job_widget(job: Job) -> w.Widget:
    """A live widget for one job (what a Job shows as a cell's value)."""
    return JobView(job).widget


def lote_widget(lote: Lote) -> w.Widget:
    """A live progress widget for a batch (what a Lote shows as a cell's value)."""
    return LoteView(lote).widget
