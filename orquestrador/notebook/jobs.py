"""Live progress widgets for ``Job`` and ``Lote`` shown as a cell's value."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from orquestrador.notebook._live import CLOSED, erro_html, esc, ticker
from orquestrador.store import Store, jobs_filter
from orquestrador.vocabulary import ESTADOS, FALHAS, FINAIS

if TYPE_CHECKING:
    from orquestrador.facade import Job, Lote

COLOURS = {"ok": "#1a7f37", "erro": "#b00", "dead-lettered": "#b00", "running": "#9a6700"}
ORDER = [*ESTADOS[1:], ESTADOS[0]]  # unknown last: it is the least interesting


WINDOW = 10.0  # seconds of finished jobs the current rate is measured over


@dataclass(frozen=True)
class Throughput:
    """Jobs per second and the ETA it implies; ``average`` once nothing is left to do."""

    per_second: float
    eta: float | None  # seconds; None while nothing has finished to measure by
    average: bool = False

    def html(self) -> str:
        if self.average:
            return f"avg {self.per_second:.1f} jobs/s"
        return f"{self.per_second:.1f} jobs/s · ETA {fmt_seconds(self.eta)}"


def throughput(
    store: Store, where: str, args: list[Any], remaining: int, now: float | None = None
) -> Throughput:
    """The rate of the jobs matching ``where`` (a :func:`jobs_filter` clause), from the store.

    Why from the store, not from samples of each widget: the dashboard and a batch's widget then
    compute the same number from the same finish times (the workers' clocks), whenever each
    redraws. While jobs remain it is the rate of the last ``WINDOW`` seconds (or since the first
    launch, if more recent); once none remain it is the average from first launch to last finish.
    """
    now = time.time() if now is None else now
    sql = f"SELECT MIN(enviado_em), MAX(concluido_em), COALESCE(SUM(concluido_em >= ?), 0) FROM jobs{where}"
    first, last, recent = store._conn().execute(sql, [now - WINDOW, *args]).fetchone()
    if first is None:
        return Throughput(0.0, None)
    if remaining <= 0:
        finished = store._conn().execute(f"SELECT COUNT(concluido_em) FROM jobs{where}", args).fetchone()[0]
        span = (last or first) - first
        return Throughput(finished / span if span > 0 else 0.0, 0.0, average=True)
    span = now - max(first, now - WINDOW)
    rate = recent / span if span > 0 else 0.0
    return Throughput(rate, remaining / rate if rate > 0 else None)


def counts_html(counts: dict[str, int]) -> str:
    parts = []
    for state in ORDER + sorted(set(counts) - set(ORDER)):
        n = counts.get(state, 0)
        if n:
            colour = COLOURS.get(state, "#555")
            parts.append(f"<b style='color:{colour}'>{esc(state)}</b> {n}")
    return " · ".join(parts) or "no jobs yet"


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min {seconds % 60:02.0f} s"
    return f"{seconds // 3600:.0f} h {seconds % 3600 // 60:02.0f} min"


class JobView:
    """One job: status, attempt, duration, the title or result, or the error — escaped."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.status = w.HTML()
        self.widget = w.VBox([self.status])
        self.finished = False
        self.refresh()
        if not self.finished:
            ticker(job._orq).add(self)

    def refresh(self) -> None:
        row = self.job._row()
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
            ticker(lote._orq).add(self)

    def refresh(self) -> None:
        counts = self.lote.contagem()
        total = len(self.lote)
        done = sum(counts.get(s, 0) for s in FINAIS)
        where, args = jobs_filter(lote=self.lote.id)
        rate = throughput(self.lote._orq._core.store, where, args, total - done)
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
