"""``Job`` and ``Lote``: handles on launched work that read its state from the store.

A handle keeps ids only, never a copy of the state, so it is never stale and a batch of
100,000 jobs costs no memory; waiting and counting go through the Orquestrador that made it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from orquestrador import consumers
from orquestrador.envelope import Envelope
from orquestrador.errors import JobTimeout
from orquestrador.store import JobRow
from orquestrador.vocabulary import FINAIS

if TYPE_CHECKING:
    import pandas as pd

    from orquestrador.facade.client import Orquestrador


class Job:
    """One launched envelope. Its state lives in the store, so it is never stale."""

    __slots__ = ("_orq", "alvo", "correlation_id", "message_id", "tipo_evento")

    def __init__(
        self, orq: Orquestrador, message_id: str, correlation_id: str, alvo: str | None, tipo_evento: str
    ) -> None:
        self._orq = orq
        self.message_id = message_id
        self.correlation_id = correlation_id
        self.alvo = alvo
        self.tipo_evento = tipo_evento

    @classmethod
    def of(cls, orq: Orquestrador, envelope: Envelope) -> Job:
        env = envelope
        return cls(orq, env.message_id or "", env.correlation_id, env.alvo, env.tipo_evento)

    @property
    def orquestrador(self) -> Orquestrador:
        """The Orquestrador that launched (or found) this job."""
        return self._orq

    def record(self) -> JobRow | None:
        """Everything the store holds about the job now, read once (None if it has no record)."""
        return self._orq._core.store.job(self.message_id)

    def _row(self) -> JobRow | None:
        return self.record()

    @property
    def status(self) -> str:
        """unknown, queued, running, ok, erro or dead-lettered."""
        row = self._row()
        return "unknown" if row is None else row.estado

    @property
    def done(self) -> bool:
        return self.status in FINAIS

    @property
    def result(self) -> dict[str, Any] | None:
        """The handler's result once the job is ok; None before (or on failure)."""
        row = self._row()
        return row.resultado if row is not None and row.estado == "ok" else None

    @property
    def partes(self) -> list[dict[str, Any]]:
        """Partial results the handler yielded so far, in order (durable, deduplicated)."""
        return self._orq._core.store.parts(self.message_id)

    @property
    def erro(self) -> dict[str, Any] | None:
        row = self._row()
        return row.erro if row is not None else None

    @property
    def tentativa(self) -> int | None:
        row = self._row()
        return row.tentativa if row is not None else None

    def wait(self, timeout: float | None = None) -> Job:
        """Block until the job is final; raises JobTimeout (the job goes on) if it takes longer.

        After a few seconds still queued, it warns if no worker consumes the job's queue.
        """
        orq, started = self._orq, time.monotonic()
        first = consumers.WAIT_WARN_AFTER if timeout is None else min(timeout, consumers.WAIT_WARN_AFTER)
        try:
            try:
                orq._run(orq._core.esperar(self.message_id, first))
            except TimeoutError:
                if first >= consumers.WAIT_WARN_AFTER and self.status == "queued":
                    orq._warn_unserved(self.tipo_evento, self.alvo)
                left = None if timeout is None else timeout - (time.monotonic() - started)
                if left is not None and left <= 0:
                    raise
                orq._run(orq._core.esperar(self.message_id, left))
        except TimeoutError:
            raise JobTimeout(
                f"job {self.message_id} ({self.alvo}) not finished after {timeout}s; "
                f"status {self.status!r}. Is a worker running for it (orq worker ...)?",
                message_id=self.message_id,
            ) from None
        return self

    def __repr__(self) -> str:
        return f"Job(alvo={self.alvo!r}, correlation_id={self.correlation_id!r}, status={self.status!r})"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        """In Jupyter a Job shows a live widget; the plain-text part stays its repr."""
        try:
            from orquestrador.notebook import job_widget
        except ImportError:  # no ipywidgets in this environment: the text is enough
            return {"text/plain": repr(self)}
        return _widget_bundle(job_widget(self), repr(self), include, exclude)


class Lote:
    """A batch of jobs launched together.

    It holds only its id and size: the store tags each job with the batch, so counting, listing
    and waiting read the store, and 100,000 jobs cost no memory here.
    """

    def __init__(self, orq: Orquestrador, lote: str, size: int) -> None:
        self._orq = orq
        self.id = lote
        self._size = size

    @property
    def orquestrador(self) -> Orquestrador:
        """The Orquestrador that launched (or found) this batch."""
        return self._orq

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[Job]:
        store, page = self._orq._core.store, 1000
        for offset in range(0, self._size, page):
            for row in store.lote_jobs(self.id, offset, page):
                yield Job(self._orq, *row)

    def __getitem__(self, index: int) -> Job:
        if not -self._size <= index < self._size:
            raise IndexError(f"batch of {self._size} jobs has no job {index}")
        rows = self._orq._core.store.lote_jobs(self.id, index % self._size, 1)
        return Job(self._orq, *rows[0])

    @property
    def jobs(self) -> list[Job]:
        """Every job of the batch (built from the store on each call)."""
        return list(self)

    def contagem(self) -> dict[str, int]:
        """How many jobs are in each state."""
        counts = self._orq._core.store.count_lote(self.id)
        known = sum(counts.values())
        if known < self._size:
            counts["unknown"] = self._size - known
        return counts

    @property
    def done(self) -> bool:
        counts = self.contagem()
        return sum(counts.get(s, 0) for s in FINAIS) == self._size

    def wait(self, timeout: float | None = None, *, poll: float = 0.1) -> Lote:
        """Block until every job is final; warns, as Job.wait does, when nothing starts."""
        started = time.monotonic()
        deadline = None if timeout is None else started + timeout
        warn_at: float | None = started + consumers.WAIT_WARN_AFTER
        while not self.done:
            self._orq._check_open()  # nothing collects results any more: this would never end
            now = time.monotonic()
            if deadline is not None and now > deadline:
                raise JobTimeout(f"batch of {len(self)} not finished after {timeout}s: {self.contagem()}")
            if warn_at is not None and now > warn_at:
                warn_at = None
                if set(self.contagem()) <= {"queued", "unknown"} and self._size:
                    _, _, alvo, tipo = self._orq._core.store.lote_jobs(self.id, 0, 1)[0]
                    self._orq._warn_unserved(tipo, alvo)
            time.sleep(poll)
        return self

    def resultados(self) -> pd.DataFrame:
        """The batch's rows of :meth:`Orquestrador.resultados`."""
        return self._orq._frame(lote=self.id)

    def __repr__(self) -> str:
        return f"Lote({len(self)} jobs: {self.contagem()})"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        """In Jupyter a Lote shows a live progress bar; the plain-text part stays its repr."""
        try:
            from orquestrador.notebook import lote_widget
        except ImportError:  # no ipywidgets in this environment: the text is enough
            return {"text/plain": repr(self)}
        return _widget_bundle(lote_widget(self), repr(self), include, exclude)


def _widget_bundle(widget: Any, text: str, include: Any, exclude: Any) -> dict[str, Any]:
    bundle = widget._repr_mimebundle_(include=include, exclude=exclude) or {}
    data = bundle[0] if isinstance(bundle, tuple) else bundle
    return {**data, "text/plain": text}
