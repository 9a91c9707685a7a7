"""The bridge from synchronous calls to the asyncio core: one loop thread per Orquestrador.

Why a class of its own: every public call of the facade goes through :meth:`Session._run`, and
what happens past ``close()`` (a clear :class:`ClosedError`, not "Event loop is closed") and at
interpreter exit (close what is still open, so results are not held on the broker) is the same
whatever the call is.
"""

from __future__ import annotations

import atexit
import logging
import sys
import weakref
from collections.abc import Coroutine
from typing import Any, Self, TypeVar

from orquestrador.errors import ClosedError
from orquestrador.loop_thread import LoopThread
from orquestrador.orchestrator import AsyncOrquestrador

T = TypeVar("T")


class Session:
    """An :class:`AsyncOrquestrador` started on a private loop thread, closed once."""

    def __init__(self, core: AsyncOrquestrador) -> None:
        self._loop = LoopThread()
        self._closing = False
        self._core = core
        try:
            self._loop.run(self._core.start())
        except BaseException:
            self._loop.run(self._core.close())
            self._loop.stop()
            raise
        _open.add(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._loop.loop.is_closed() or self._closing

    def close(self) -> None:
        """Stop collecting results and disconnect; the store (and every result in it) stays."""
        if not self.closed:
            live = sys.modules.get("orquestrador.notebook._live")  # loaded only if widgets were shown
            if live is not None:
                live.close_views(self)  # their final state, drawn while the broker is still open
            self._closing = True
            self._loop.run(self._core.close())
            self._loop.stop()

    def _check_open(self) -> None:
        if self.closed:
            raise ClosedError

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the core's loop; on a closed Orquestrador, :class:`ClosedError`.

        Why here: past ``close()`` the loop is gone, and asyncio would say "Event loop is
        closed" and leave a never-awaited coroutine behind, which tells a notebook user nothing.
        """
        if self.closed:
            coro.close()
            raise ClosedError
        try:
            return self._loop.run(coro, timeout)
        except RuntimeError as exc:
            if self.closed:  # closed from another thread meanwhile
                raise ClosedError from exc
            raise


_open: weakref.WeakSet[Session] = weakref.WeakSet()


@atexit.register
def _close_open() -> None:
    """Close what is still open when the interpreter exits, e.g. on a kernel restart.

    Why: results fetched but not yet acknowledged would otherwise wait on the broker for their
    visibility timeout (a minute) before the next Orquestrador gets them.
    """
    for orq in list(_open):
        try:
            orq.close()
        except Exception as exc:  # exiting anyway: say it, and go on with the others
            logging.getLogger("orquestrador").warning("closing %r at exit failed: %r", orq, exc)
