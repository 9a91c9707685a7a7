"""Live progress widgets for ``Job`` and ``Lote`` shown as a cell's value."""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING

import ipywidgets as w

from orquestrador.notebook._live import esc, ticker
from orquestrador.store import FINAIS

if TYPE_CHECKING:
    from orquestrador.facade import Job, Lote

COLOURS = {"ok": "#1a7f37", "erro": "#b00", "dead-lettered": "#b00", "running": "#9a6700"}
ORDER = ["queued", "running", "ok", "erro", "dead-lettered", "unknown"]


class Rate:
    """Throughput over the last ``window`` seconds, and the ETA it implies."""

    def __init__(self, window: float = 10.0) -> None:
        self.window = window
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, done: int, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._samples.append((now, done))
        while len(self._samples) > 2 and now - self._samples[0][0] > self.window:
            self._samples.popleft()

    @property
    def per_second(self) -> float:
        if len(self._samples) < 2:
            return 0.0
        (t0, d0), (t1, d1) = self._samples[0], self._samples[-1]
        return (d1 - d0) / (t1 - t0) if t1 > t0 else 0.0

    def eta(self, remaining: int) -> float | None:
        rate = self.per_second
        return remaining / rate if rate > 0 and remaining > 0 else (0.0 if remaining == 0 else None)


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
        return f"{seconds:.0f}s"
    return f"{seconds // 60:.0f}m{seconds % 60:02.0f}s"


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
                lines.append(
                    f"<span style='color:#b00'>{esc(row.erro.get('tipo'))}: "
                    f"{esc(row.erro.get('mensagem'))}</span>"
                )
        self.status.value = "<br>".join(lines)
        self.finished = estado in FINAIS


class LoteView:
    """A batch: a progress bar, counts by status, throughput and ETA from aggregate counts."""

    def __init__(self, lote: Lote) -> None:
        self.lote = lote
        self.rate = Rate()
        self.bar = w.IntProgress(value=0, min=0, max=max(1, len(lote)), description="0%")
        self.status = w.HTML()
        self.widget = w.VBox([self.bar, self.status])
        self.finished = False
        self.refresh()
        if not self.finished:
            ticker(lote._orq).add(self)

    def refresh(self) -> None:
        counts = self.lote.contagem()
        total = len(self.lote)
        done = sum(counts.get(s, 0) for s in FINAIS)
        self.rate.add(done)
        self.bar.value = done
        self.bar.description = f"{100 * done // max(1, total)}%"
        failed = counts.get("erro", 0) + counts.get("dead-lettered", 0)
        self.bar.bar_style = "danger" if failed else ("success" if done == total else "info")
        self.status.value = (
            f"{done}/{total} done · {counts_html(counts)} · {self.rate.per_second:.1f} jobs/s · "
            f"ETA {fmt_seconds(self.rate.eta(total - done))}"
        )
        self.finished = done == total


def job_widget(job: Job) -> w.Widget:
    """A live widget for one job (what a Job shows as a cell's value)."""
    return JobView(job).widget


def lote_widget(lote: Lote) -> w.Widget:
    """A live progress widget for a batch (what a Lote shows as a cell's value)."""
    return LoteView(lote).widget
