"""``painel(orq)``: launch jobs, watch them, see queue stats and replay dead letters."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from orquestrador.brokers.base import DLQ_REASON, QueueStats, dlq_of
from orquestrador.notebook._live import esc, ticker
from orquestrador.notebook.jobs import Rate, counts_html, fmt_seconds
from orquestrador.plugins import Plugin, registry
from orquestrador.store import FINAIS

if TYPE_CHECKING:
    from orquestrador.facade import Orquestrador

STATS_EVERY = 2.0  # queue stats are broker round trips: fewer of them than store reads


class Painel:
    """The dashboard. Every refresh reads aggregate counts, so its cost does not grow with jobs."""

    def __init__(self, orq: Orquestrador, plugins: list[Plugin] | None = None) -> None:
        self.orq = orq
        self.plugins = plugins if plugins is not None else registry.all()
        self.finished = False
        self.rate = Rate()
        self.refreshes = 0
        self._stats_at = 0.0
        self.stats: list[QueueStats] = []

        options = [(f"{p.kind} {p.nome}", i) for i, p in enumerate(self.plugins)]
        self.alvo = w.Dropdown(options=options, description="alvo")
        self.payload = w.Textarea(value="{}", description="payload", layout=w.Layout(width="60%"))
        self.copias = w.BoundedIntText(value=1, min=1, max=1_000_000, description="copies")
        self.lancar = w.Button(description="Launch", button_style="primary")
        self.mensagem = w.HTML()
        self.lancar.on_click(lambda _: self.launch())

        self.bar = w.IntProgress(value=0, min=0, max=1)
        self.status = w.HTML()
        self.erros = w.HTML()
        self.filas = w.HTML()
        self.dlq = w.Dropdown(options=[], description="dead letters")
        self.replay_button = w.Button(description="Replay")
        self.replay_message = w.HTML()
        self.dead_letters = w.HTML()
        self.replay_button.on_click(lambda _: self.replay())

        launcher = w.VBox([w.HBox([self.alvo, self.copias, self.lancar]), self.payload, self.mensagem])
        jobs = w.VBox([self.bar, self.status, self.erros])
        replay = w.HBox([self.dlq, self.replay_button])
        dead = w.VBox([self.filas, replay, self.replay_message, self.dead_letters])
        self.widget = w.Tab(children=[launcher, jobs, dead])
        for i, title in enumerate(["launch", "jobs", "queues"]):
            self.widget.set_title(i, title)
        self.refresh()
        ticker(orq).add(self)

    # -- actions ---------------------------------------------------------------------------

    def launch(self) -> int:
        """Validate the payload, launch it (N copies); the error, if any, shows in the widget."""
        try:
            payload = json.loads(self.payload.value or "{}")
        except json.JSONDecodeError as exc:
            return self._launch_error(f"invalid JSON: {exc}")
        if not isinstance(payload, dict):
            return self._launch_error(f"the payload must be a JSON object, not {type(payload).__name__}")
        if self.alvo.value is None:
            return self._launch_error("no plugin registered: import the module that defines it")
        plugin = self.plugins[self.alvo.value]
        n = int(self.copias.value)
        launch: Any = self.orq.iniciar_coletas if plugin.kind == "escavador" else self.orq.iniciar_execucoes
        try:
            lote = launch(plugin.nome, [dict(payload) for _ in range(n)], progress=False)
        except Exception as exc:
            return self._launch_error(f"{type(exc).__name__}: {exc}")
        self.mensagem.value = f"launched {len(lote)} × <code>{esc(plugin.nome)}</code>"
        ticker(self.orq)._dirty.set()
        return len(lote)

    def _launch_error(self, message: str) -> int:
        self.mensagem.value = f"<span style='color:#b00'>{esc(message, 1000)}</span>"
        return 0

    def replay(self) -> int:
        """Move the selected queue's dead letters back onto it."""
        fila = self.dlq.value
        if not fila:
            self.replay_message.value = "no dead letters to replay"
            return 0
        # Bounded by what was there: a worker that fails them again must not make this loop forever.
        limit = max(1, next((s.dead_letters for s in self.stats if s.queue == fila), 1))
        try:
            moved = self.orq._loop.run(self.orq._core._broker().replay(fila, limit=limit), timeout=60)
        except Exception as exc:
            self.replay_message.value = f"<span style='color:#b00'>{esc(repr(exc))}</span>"
            return 0
        self.replay_message.value = f"replayed {moved} message(s) onto <code>{esc(fila)}</code>"
        self._stats_at = 0.0
        return moved

    # -- refresh ---------------------------------------------------------------------------

    def refresh(self) -> None:
        self.refreshes += 1
        store = self.orq._core.store
        counts = store.count_by_state()
        total = sum(counts.values())
        done = sum(counts.get(s, 0) for s in FINAIS)
        self.rate.add(done)
        self.bar.max = max(1, total)
        self.bar.value = done
        self.status.value = (
            f"{done}/{total} done · {counts_html(counts)} · {self.rate.per_second:.1f} jobs/s · "
            f"ETA {fmt_seconds(self.rate.eta(total - done))}"
        )
        self.erros.value = self._errors_html(store)
        if time.monotonic() - self._stats_at >= STATS_EVERY:
            self._stats_at = time.monotonic()
            self._refresh_stats()

    def _errors_html(self, store: Any) -> str:
        rows = (
            store._conn()
            .execute(
                "SELECT alvo, estado, erro FROM jobs WHERE estado IN ('erro', 'dead-lettered') "
                "ORDER BY rowid DESC LIMIT 5"
            )
            .fetchall()
        )
        if not rows:
            return ""
        items = []
        for r in rows:
            erro = json.loads(r["erro"]) if r["erro"] else {}
            items.append(
                f"<li><code>{esc(r['alvo'])}</code> {esc(r['estado'])}: "
                f"{esc(erro.get('tipo'))} {esc(erro.get('mensagem'))}</li>"
            )
        return "<b>latest errors</b><ul>" + "".join(items) + "</ul>"

    def _refresh_stats(self) -> None:
        broker = self.orq._core.broker
        if broker is None:
            return
        filas = sorted({p.fila for p in self.plugins})

        async def read() -> list[QueueStats]:
            out = []
            for fila in filas:
                try:
                    out.append(await broker.stats(fila))
                except Exception:  # not declared yet on this broker: nothing to show
                    continue
            return out

        self.stats = self.orq._loop.run(read(), timeout=10)
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

    def _peek_html(self, fila: str) -> str:
        broker = self.orq._core._broker()
        try:
            messages = self.orq._loop.run(broker.peek(dlq_of(fila), 5), timeout=10)
        except Exception:
            return ""
        items = "".join(f"<li>{esc(m.headers.get(DLQ_REASON, '?'))}</li>" for m in messages)
        return f"<b>first dead letters</b><ul>{items}</ul>" if items else ""

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> Any:
        return self.widget._repr_mimebundle_(include=include, exclude=exclude)

    def close(self) -> None:
        ticker(self.orq).remove(self)
        self.widget.close()


def painel(orq: Orquestrador, plugins: list[Plugin] | None = None) -> Painel:
    """Build the dashboard; display ``painel(orq)`` (or ``.widget``) in a cell."""
    return Painel(orq, plugins)
