"""``painel(orq)``: launch jobs, watch them, see queue stats, replay dead letters, see schedules."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from orquestrador import consumers
from orquestrador.brokers.base import DLQ_REASON, QueueStats
from orquestrador.notebook._live import CLOSED, erro_html, esc, ticker
from orquestrador.notebook.jobs import counts_html
from orquestrador.notebook.lancador import Lancador
from orquestrador.plugins import Plugin, registry
from orquestrador.vocabulary import FINAIS

if TYPE_CHECKING:
    import pandas as pd

    from orquestrador.agenda import Agenda
    from orquestrador.facade import Lote, Orquestrador

STATS_EVERY = 2.0  # queue stats are broker round trips: fewer of them than store reads
STATS_TIMEOUT = 10.0  # seconds the broker has to answer them before the queues tab says so


JANELAS = [
    ("all jobs", 0),
    ("last 5 minutes", 300),
    ("last 15 minutes", 900),
    ("last hour", 3600),
    ("last 24 hours", 86400),
]  # the jobs view's time range: seconds back from now a job was sent within; 0 is all


class Painel:
    """The dashboard. Every refresh reads aggregate counts, so its cost does not grow with jobs."""

    def __init__(
        self, orq: Orquestrador, plugins: list[Plugin] | None = None, dados: pd.DataFrame | None = None
    ) -> None:
        self.orq = orq
        self.plugins = plugins if plugins is not None else registry.all()
        self.finished = False
        self.refreshes = 0
        self._stats_at = 0.0
        self.stats: list[QueueStats] = []

        self.lancador = Lancador(orq, self.plugins, dados)
        self.lancador.lancar.on_click(lambda _: ticker(self.orq)._dirty.set())
        self.lancador.on_schedule = lambda _: self._refresh_agendas()  # shown at once, not next period

        self.janela = w.Dropdown(options=JANELAS, value=0, description="show")
        self.janela.observe(lambda _: self._redraw(), names="value")
        self.bar = w.IntProgress(value=0, min=0, max=1)
        self.status = w.HTML()
        self.avisos = w.HTML()  # queues with jobs waiting and no worker on them
        self.erros = w.HTML()
        self.filas = w.HTML()
        self.dlq = w.Dropdown(options=[], description="dead letters")
        self.replay_button = w.Button(description="Replay")
        self.replay_message = w.HTML()
        self.dead_letters = w.HTML()
        self.replay_button.on_click(lambda _: self.replay())
        self.agendas = w.HTML()  # the broker's schedules and their next firing

        jobs = w.VBox([w.HBox([self.janela, self.bar]), self.status, self.avisos, self.erros])
        replay = w.HBox([self.dlq, self.replay_button])
        dead = w.VBox([self.filas, replay, self.replay_message, self.dead_letters])
        tabs = w.Tab(children=[self.lancador.widget, dead, self.agendas])
        for i, title in enumerate(["launch", "queues", "schedules"]):
            tabs.set_title(i, title)
        # The jobs view stays in sight: it is what one watches while the launcher is open.
        self.title = w.HTML("<b>orquestrador</b> · jobs")
        self.widget = w.VBox([self.title, jobs, tabs])
        self.widget.add_class("orq-painel")
        self.shown = (self.bar, self.status, self.avisos, self.erros)  # re-sent when idle: Ticker._draw
        self.refresh()
        ticker(orq).add(self)

    # -- actions ---------------------------------------------------------------------------

    def launch(self) -> Lote | Agenda | None:
        """What the Launch (or Schedule) button does: validate, launch the batch or make the
        schedule, show it; None if refused."""
        launched = self.lancador.submit()
        ticker(self.orq)._dirty.set()
        return launched

    def mark_closed(self) -> None:
        """Called once the orchestrator closed: the counts are final, nothing can be launched."""
        self.title.value = f"<b>orquestrador</b> · jobs · <b style='color:#b00'>{CLOSED}</b>"
        self.widget.add_class("orq-closed")
        for button in (self.lancador.lancar, self.replay_button):
            button.disabled = True

    def replay(self) -> int:
        """Move the selected queue's dead letters back onto it."""
        fila = self.dlq.value
        if not fila:
            self.replay_message.value = "no dead letters to replay"
            return 0
        # Bounded by what was there: a worker that fails them again must not make this loop forever.
        limit = max(1, next((s.dead_letters for s in self.stats if s.queue == fila), 1))
        try:
            moved = self.orq.replay(fila, limit=limit, timeout=60)
        except Exception as exc:
            self.replay_message.value = f"<span style='color:#b00'>{esc(repr(exc))}</span>"
            return 0
        self.replay_message.value = f"replayed {moved} message(s) onto <code>{esc(fila)}</code>"
        self._stats_at = 0.0
        return moved

    # -- refresh ---------------------------------------------------------------------------

    def since(self) -> float | None:
        """The start of the jobs view's time range (epoch seconds), or None for all jobs."""
        return time.time() - self.janela.value if self.janela.value else None

    def _redraw(self) -> None:
        """Redraw at once (a changed time range), never alongside the refresh thread."""
        with ticker(self.orq)._drawing:
            self.refresh()

    def refresh(self) -> None:
        self.refreshes += 1
        since = self.since()
        everything = self.orq.contagem()
        counts = everything if since is None else self.orq.contagem(desde=since)
        total = sum(counts.values())
        done = sum(counts.get(s, 0) for s in FINAIS)
        self.bar.max = max(1, total)
        self.bar.value = done
        pending = total - done
        # The same measure as a batch's widget: while one batch runs alone, they agree.
        rate = self.orq.throughput(desde=since, remaining=pending).html() if pending else "idle"
        self.status.value = f"{done}/{total} done · {counts_html(counts)} · {rate}"
        saude = self.orq.saude()  # a store that cannot be written: said first, in red
        alerta = "" if saude.ok else f"<b style='color:#b00'>{esc(str(saude), 600)}</b>"
        self.erros.value = alerta + self._errors_html(since)
        if time.monotonic() - self._stats_at >= STATS_EVERY:
            self._stats_at = time.monotonic()
            self._refresh_stats()
            self._refresh_agendas()
        self.avisos.value = self._unserved_html() if everything.get("queued") else ""

    def _unserved_html(self) -> str:
        """A warning per queue with jobs waiting that no worker consumes (from the last stats)."""
        warnings = [m for s in self.stats if s.depth and (m := consumers.unserved(s))]
        return "".join(f"<div class='orq-unserved' style='color:#9a6700'>⚠ {esc(m)}</div>" for m in warnings)

    def _errors_html(self, since: float | None) -> str:
        rows = self.orq.latest_errors(5, desde=since)
        if not rows:
            return ""
        items = []
        for r in rows:
            items.append(f"<li><code>{esc(r['alvo'])}</code> {esc(r['estado'])}: {erro_html(r['erro'])}</li>")
        return "<b>latest errors</b><ul>" + "".join(items) + "</ul>"

    def _refresh_stats(self) -> None:
        if self.orq.closed:
            return
        filas = {p.fila for p in self.plugins} | set(self.orq.waiting_queues())
        try:
            self.stats = self.orq.queues(filas, timeout=STATS_TIMEOUT)
        except Exception as exc:  # a slow or lost broker: said here, the jobs view above stays right
            self.filas.value = f"<span style='color:#b00'>queue stats unavailable: {esc(repr(exc))}</span>"
            return
        rows = "".join(
            f"<tr><td><code>{esc(s.queue)}</code></td><td>{s.depth}</td><td>{s.in_flight}</td>"
            f"<td>{s.dead_letters}</td><td>{'' if s.consumers is None else s.consumers}</td></tr>"
            for s in self.stats
        )
        self.filas.value = (
            "<table><tr><th>queue</th><th>depth</th><th>in flight</th><th>dead letters</th>"
            f"<th>consumers</th></tr>{rows}</table>"
        )
        with_dead = [s.queue for s in self.stats if s.dead_letters]
        if list(self.dlq.options) != with_dead:
            self.dlq.options = with_dead
            if with_dead and self.dlq.value is None:
                self.dlq.value = with_dead[0]
        self.dead_letters.value = self._peek_html(self.dlq.value) if self.dlq.value else ""

    def _refresh_agendas(self) -> None:
        if self.orq.closed:
            return
        try:
            frame = self.orq.agendas()
        except Exception as exc:  # a slow or lost broker: said here, the rest stays right
            self.agendas.value = f"<span style='color:#b00'>schedules unavailable: {esc(repr(exc))}</span>"
            return
        if frame.empty:
            self.agendas.value = (
                "no schedules: <code>orq.agendar(...)</code>, <code>orq agenda add</code> or the "
                "launch tab's repeat makes one"
            )
            return
        rows = "".join(
            f"<tr><td><code>{esc(r.id)}</code></td><td>{esc(r.alvo)}</td><td>{esc(r.quando)}</td>"
            f"<td>{'paused' if r.pausada else 'active'}</td><td>{_when(r.ultima)}</td>"
            f"<td>{_when(r.proxima)}</td></tr>"
            for r in frame.itertuples()
        )
        self.agendas.value = (
            "<table class='orq-agendas'><tr><th>schedule</th><th>alvo</th><th>when</th><th>state</th>"
            f"<th>last firing</th><th>next firing</th></tr>{rows}</table>"
        )

    def _peek_html(self, fila: str) -> str:
        try:
            messages = self.orq.dead_letters(fila, 5)
        except Exception:  # a slow or lost broker: the stats above say so
            return ""
        items = "".join(f"<li>{esc(m.headers.get(DLQ_REASON, '?'))}</li>" for m in messages)
        return f"<b>first dead letters</b><ul>{items}</ul>" if items else ""

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> Any:
        return self.widget._repr_mimebundle_(include=include, exclude=exclude)

    def close(self) -> None:
        ticker(self.orq).remove(self)
        self.widget.close()


def _when(moment: Any) -> str:
    """A firing time in UTC, or '-' (never fired; paused)."""
    return "-" if moment is None or moment != moment else esc(moment.strftime("%Y-%m-%d %H:%M:%S UTC"))


def painel(
    orq: Orquestrador, plugins: list[Plugin] | None = None, dados: pd.DataFrame | None = None
) -> Painel:
    """Build the dashboard; display ``painel(orq)`` (or ``.widget``) in a cell.

    With ``dados``, the launcher offers one job per row of any of its columns.
    """
    return Painel(orq, plugins, dados)
