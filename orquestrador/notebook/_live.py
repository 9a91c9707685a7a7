"""One refresh thread per orchestrator, shared by every live widget.

Why: a widget that redrew on every finished job would flood the front end with 10,000 jobs in
flight. The orchestrator's loop thread only sets a flag (cheap); this thread redraws the live
views at most once per ``interval`` from aggregate store reads, never per-job widgets.
"""

from __future__ import annotations

import html
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from orquestrador import display

if TYPE_CHECKING:
    from orquestrador.facade import Orquestrador

INTERVAL = 0.5  # seconds between two redraws of a view, at most
IDLE = 2.0  # redraw anyway this often (queue stats change without results arriving)


def esc(value: Any, limit: int = 300) -> str:
    """HTML-escape anything shown in a widget: titles and payloads come from untrusted pages."""
    return html.escape(display.text(value, limit - 1), quote=True)  # any depth, bounded


def erro_html(erro: dict[str, Any] | None) -> str:
    """``tipo: mensagem`` in red, and the worker's traceback folded below it (escaped)."""
    if not erro:
        return ""
    line = f"<span style='color:#b00'>{esc(erro.get('tipo'))}: {esc(erro.get('mensagem'))}</span>"
    trace = erro.get("traceback")
    if isinstance(trace, str) and trace:
        line += (
            "<details class='orq-traceback'><summary>remote traceback</summary>"
            f"<pre style='font-size:85%;white-space:pre-wrap'>{esc(trace, 5000)}</pre></details>"
        )
    return line


CLOSED = "this Orquestrador is closed: create a new one"


class View(Protocol):
    def refresh(self) -> None: ...

    @property
    def finished(self) -> bool: ...


class Ticker:
    """Redraws registered views at most every ``interval`` seconds while the orchestrator lives."""

    def __init__(self, orq: Orquestrador, interval: float = INTERVAL, idle: float = IDLE) -> None:
        self.interval = interval
        self.idle = idle
        self._orq = weakref.ref(orq)
        self._views: list[View] = []
        self._lock = threading.Lock()
        self._drawing = threading.Lock()  # one redraw pass at a time: the thread's or close()'s
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._unsubscribe: Callable[[], None] = orq.subscribe(self._poke)
        self._thread = threading.Thread(target=self._run, name="orq-widgets", daemon=True)
        self._thread.start()

    def _poke(self, finished: list[str]) -> None:
        """Called from the loop thread for every batch of results: only sets a flag."""
        self._dirty.set()

    def poke(self) -> None:
        """Something a view shows changed (from any thread): redraw at the next pass."""
        self._dirty.set()

    def add(self, view: View) -> None:
        with self._lock:
            self._views.append(view)
        self._dirty.set()

    def remove(self, view: View) -> None:
        with self._lock:
            if view in self._views:
                self._views.remove(view)

    def stop(self) -> None:
        self._stop.set()
        self._dirty.set()
        self._unsubscribe()

    def close(self) -> None:
        """Draw every view once more, then stop: called by ``Orquestrador.close()``.

        Why: a notebook that closes its orchestrator right after the last result would otherwise
        leave a dashboard up to ``interval`` seconds stale, showing jobs as unfinished forever.
        Views that would have gone on say the orchestrator is closed (their counts are final).
        """
        with self._drawing:
            if not self._stop.is_set():
                self._draw()
            with self._lock:
                views = list(self._views)  # before stop(): the thread clears them as it ends
            self.stop()
            for view in views:
                mark = getattr(view, "mark_closed", None)
                if mark is not None:
                    mark()

    def _alive(self) -> bool:
        orq = self._orq()
        return orq is not None and not orq.closed and not self._stop.is_set()

    def _run(self) -> None:
        while self._alive():
            poked = self._dirty.wait(self.idle)
            self._dirty.clear()
            with self._drawing:
                if not self._alive():
                    break
                self._draw(resend=not poked)
            self._stop.wait(self.interval)
        with self._lock:
            self._views.clear()

    def _draw(self, resend: bool = False) -> None:
        """Redraw every view; on idle passes ``resend`` their state even if nothing changed.

        Why resend: a widget only sends a value that changed, so a front end that missed the last
        update (connected while it was in flight, or reconnected) would show it stale for good.
        """
        with self._lock:
            views = list(self._views)
        for view in views:
            try:
                view.refresh()
                if resend:
                    for widget in getattr(view, "shown", ()):
                        widget.send_state()
            except Exception as exc:  # a broken view must not stop the others
                _show_error(view, exc)
            if view.finished:
                self.remove(view)


def close_views(orq: Orquestrador) -> None:
    """Final redraw of ``orq``'s live views, if it has any; its loop must still be running."""
    with _tickers_lock:
        current = _tickers.pop(orq, None)
    if current is not None and current._thread.is_alive():
        current.close()


def _show_error(view: View, exc: Exception) -> None:
    status = getattr(view, "status", None)
    if status is not None:
        status.value = f"<span style='color:#b00'>refresh failed: {esc(repr(exc))}</span>"


_tickers: weakref.WeakKeyDictionary[Any, Ticker] = weakref.WeakKeyDictionary()
_tickers_lock = threading.Lock()


def ticker(orq: Orquestrador) -> Ticker:
    """The orchestrator's shared refresh thread, started on first use."""
    with _tickers_lock:
        current = _tickers.get(orq)
        if current is None or not current._thread.is_alive():
            current = Ticker(orq)
            _tickers[orq] = current
        return current
