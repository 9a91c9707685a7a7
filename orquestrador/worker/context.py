"""What a handler gets besides its payload: who it works for, and ways to report back."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Contexto:
    """Passed as the second argument to handlers that accept two.

    ``progress`` records how far a long job got (it shows in traces); the runtime heartbeats the
    message on its own, so calling it is never needed to keep a lease. ``cancelado`` is set when
    the worker drains on SIGTERM; long handlers may check it and stop early.
    """

    correlation_id: str
    message_id: str
    tentativa: int
    alvo: str
    log: logging.LoggerAdapter[logging.Logger]
    cancelado: threading.Event = field(default_factory=threading.Event)
    _on_progress: Callable[[float, str | None], None] | None = None

    def progress(self, fraction: float, note: str | None = None) -> None:
        if self._on_progress is not None:
            self._on_progress(max(0.0, min(1.0, float(fraction))), note)


class JobLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Puts correlation_id and message_id on every line, so a job's logs can be grepped."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        extra = dict(self.extra or {})
        kwargs["extra"] = {**extra, **kwargs.get("extra", {})}
        return msg, kwargs
