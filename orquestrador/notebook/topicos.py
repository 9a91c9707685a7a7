"""``topicos(orq, padrao, n)``: the last messages on the topics a pattern matches, live.

Why through the shared refresh thread: the subscription's callback runs on the orchestrator's
loop thread for every message; it only keeps the message (the last ``n``) and pokes the ticker,
which redraws at most twice a second however many arrive. Everything shown came from whoever
published on the topic, so every field is escaped and bounded.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from orquestrador.notebook._live import CLOSED, esc, ticker

if TYPE_CHECKING:
    from orquestrador.facade import Orquestrador
    from orquestrador.topics import TopicMessage

MAX_N = 1000


class Topicos:
    """A table of the newest ``n`` messages of ``padrao`` (newest first), and how many came."""

    def __init__(self, orq: Orquestrador, padrao: str, n: int = 20, duravel: str | None = None) -> None:
        if not isinstance(n, int) or not 1 <= n <= MAX_N:
            raise ValueError(f"n is how many messages to show, 1 to {MAX_N}; got {n!r}")
        self.orq = orq
        self.padrao = padrao
        self.status = w.HTML()
        self.table = w.HTML()
        self.stop_button = w.Button(description="stop", tooltip="cancel the subscription")
        self.stop_button.on_click(lambda _: self.cancelar())
        self.widget = w.VBox([w.HBox([self.status, self.stop_button]), self.table])
        self.widget.add_class("orq-topicos")
        self.shown = (self.status, self.table)
        self._last: deque[tuple[float, TopicMessage]] = deque(maxlen=n)
        self._lock = threading.Lock()
        self._count = 0
        self._drawn = -1
        self._closed = False
        self._ticker = ticker(orq)
        self.subscription = orq.assinar(padrao, self._on_message, duravel=duravel)
        self.refresh()
        self._ticker.add(self)

    def _on_message(self, message: TopicMessage) -> None:
        """On the loop thread, per message: keep it and ask for a redraw, nothing more."""
        with self._lock:
            self._last.append((time.time(), message))
            self._count += 1
        self._ticker.poke()

    @property
    def finished(self) -> bool:
        return not self.subscription.ativa

    @property
    def mensagens(self) -> list[TopicMessage]:
        """The messages shown, newest first."""
        with self._lock:
            return [m for _, m in reversed(self._last)]

    def refresh(self) -> None:
        with self._lock:
            count, rows = self._count, list(reversed(self._last))
        state = "closed" if self._closed else "live" if self.subscription.ativa else "stopped"
        kind = f" durable <code>{esc(self.subscription.duravel)}</code>" if self.subscription.duravel else ""
        self.status.value = f"<b>{esc(self.padrao)}</b>{kind}: {count} message(s), {state}" + (
            f" — {CLOSED}" if self._closed else ""
        )
        if count != self._drawn:
            self._drawn = count
            self.table.value = messages_html(rows)

    def cancelar(self) -> None:
        """Stop receiving; the table keeps what it shows."""
        self.subscription.cancelar()
        self.stop_button.disabled = True
        self.refresh()

    def mark_closed(self) -> None:
        self._closed = True
        self.stop_button.disabled = True
        self.refresh()

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> Any:
        return self.widget._repr_mimebundle_(include=include, exclude=exclude)


def messages_html(rows: list[tuple[float, TopicMessage]]) -> str:
    """The messages as an HTML table, newest first; every value escaped and bounded."""
    if not rows:
        return "<i>no message yet</i>"
    head = "".join(f"<th>{h}</th>" for h in ("received", "topic", "correlation_id", "dados", "headers"))
    body = "".join(
        "<tr>"
        f"<td>{time.strftime('%H:%M:%S', time.localtime(at))}</td><td><code>{esc(m.topico, 200)}</code></td>"
        f"<td>{esc(m.correlation_id, 64)}</td><td>{esc(m.dados)}</td>"
        f"<td>{esc(m.headers) if m.headers else ''}</td>"
        "</tr>"
        for at, m in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def topicos(orq: Orquestrador, padrao: str, n: int = 20, duravel: str | None = None) -> Topicos:
    """Subscribe to ``padrao`` and show its last ``n`` messages live; display it in a cell."""
    return Topicos(orq, padrao, n, duravel)
