"""What the facade reads: results as DataFrames, store aggregates, queues and dead letters.

Why apart from launching: these calls only read (the store, or the broker's queues) and are
what the dashboard, the CLI's views and a user's analysis share; none of them sends a job.
pandas is imported only by the methods that return DataFrames.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orquestrador import consumers, operations
from orquestrador.brokers.base import Message, QueueStats
from orquestrador.facade.session import Session
from orquestrador.store import jobs_filter, stats
from orquestrador.store.stats import Throughput
from orquestrador.vocabulary import FALHAS

if TYPE_CHECKING:
    import pandas as pd


class Reads(Session):
    """The reading half of :class:`~orquestrador.Orquestrador`."""

    # -- analysis --------------------------------------------------------------------------

    def resultados(
        self,
        alvo: str | None = None,
        *,
        status: str | list[str] | None = None,
        desde: datetime | None = None,
        ate: datetime | None = None,
        agenda: str | None = None,
    ) -> pd.DataFrame:
        """One row per job, payload and result flattened into columns; typed times.

        ``agenda`` keeps the jobs one schedule fired (its history, as their results arrive).
        """
        return self._frame(
            alvo=alvo,
            estado=status,
            desde=desde.timestamp() if desde else None,
            ate=ate.timestamp() if ate else None,
            agenda=agenda,
        )

    def _frame(self, **filters: Any) -> pd.DataFrame:
        from orquestrador.store import reader

        reader.shared.start()  # on a first call, the reader imports pyarrow while we import pandas
        from orquestrador.analysis import jobs_frame
        from orquestrador.store import jobs_filter
        from orquestrador.store.columnar import read_jobs

        where, args = jobs_filter(**filters)
        return jobs_frame(read_jobs(self._core.store.path, where, args))

    def rastrear(self, correlation_id: str) -> pd.DataFrame:
        """Every envelope and lifecycle event of one chain, in time order."""
        from orquestrador.analysis import trace_frame

        return trace_frame(self._core.store.trace(correlation_id))

    def metricas(self, alvo: str | None = None) -> pd.DataFrame:
        """Per alvo: jobs by status, error rate and latency percentiles (p50_s, p95_s, p99_s: seconds)."""
        from orquestrador.analysis import metrics_frame

        return metrics_frame(self.resultados(alvo))

    def exportar_parquet(self, path: str | Path, **filters: Any) -> Path:
        """Write ``resultados(**filters)`` to one Parquet file, for tools that do not speak SQLite."""
        from orquestrador.analysis import to_parquet

        return to_parquet(self.resultados(**filters), Path(path))

    # -- what live views read: store aggregates, queues, updates ---------------------------

    def subscribe(self, listener: Callable[[list[str]], None]) -> Callable[[], None]:
        """Call ``listener(message_ids)`` whenever results of those jobs were recorded; returns
        the function that unsubscribes it.

        It runs on the orchestrator's loop thread, once per batch of results: it must return at
        once (set a flag, put on a queue), never block or read the store there.
        """
        listeners = self._core.listeners
        listeners.append(listener)

        def unsubscribe() -> None:
            if listener in listeners:
                listeners.remove(listener)

        return unsubscribe

    def contagem(self, *, desde: datetime | float | None = None) -> dict[str, int]:
        """How many jobs of this store are in each state (those sent since ``desde``, if given)."""
        if desde is None:
            return self._core.store.count_by_state()
        return self._core.store.count_where(*jobs_filter(desde=_epoch(desde)))

    def throughput(
        self, *, remaining: int, lote: str | None = None, desde: datetime | float | None = None
    ) -> Throughput:
        """Jobs per second and the ETA of ``remaining`` jobs, from the workers' finish times of
        the batch ``lote`` or of the jobs sent since ``desde`` (all jobs without either)."""
        now = time.time()
        where, args = jobs_filter(lote=lote, desde=_epoch(desde))
        sample = self._core.store.finish_times(where, args, now - stats.WINDOW)
        return stats.throughput(*sample, remaining=remaining, now=now)

    def latest_errors(self, limit: int = 5, *, desde: datetime | float | None = None) -> list[dict[str, Any]]:
        """The newest failed jobs (``alvo``, ``estado``, ``erro``), newest first."""
        where, args = jobs_filter(estado=list(FALHAS), desde=_epoch(desde))
        return self._core.store.latest_errors(where, args, limit)

    def waiting_queues(self) -> list[str]:
        """The queues that jobs launched from this store wait on, not started yet."""
        return self._core.store.waiting_queues()

    def trace(self, correlation_id: str) -> list[dict[str, Any]]:
        """Every envelope and lifecycle event of a chain as dicts, oldest first (``rastrear``
        gives the same as a DataFrame)."""
        return self._core.store.trace(correlation_id)

    def chain_jobs(self, correlation_id: str) -> list[dict[str, Any]]:
        """Every job of a chain: ids, state, times, and its payload and result (parsed)."""
        rows = self._core.store.jobs(correlation_id=correlation_id)
        loaded = ("payload", "resultado", "erro")
        return [{k: _json(v) if k in loaded else v for k, v in dict(r).items()} for r in rows]

    def queues(self, filas: Iterable[str] | None = None, *, timeout: float = 10.0) -> list[QueueStats]:
        """Depth, in flight, consumers and dead letters of each queue of the toolkit on the
        broker (``orq queues``), or of ``filas`` only; a queue not declared yet is left out."""
        return self._run(operations.queue_overview(self._core._broker(), filas), timeout)

    def dead_letters(self, fila: str, limit: int = 5) -> list[Message]:
        """The oldest dead letters of ``fila`` (``orq dlq list``), left where they are."""
        found = self._run(operations.dead_letters(self._core._broker(), fila, limit), 30.0)
        return [message for _, message in found]

    def replay(
        self, fila: str, *, limit: int | None = None, message_id: str | None = None, timeout: float = 60.0
    ) -> int:
        """Move ``fila``'s dead letters back onto it (``orq dlq replay``): all, at most ``limit``,
        or the one with ``message_id``; returns how many moved."""
        replay = operations.replay(self._core._broker(), fila, limit=limit, message_id=message_id)
        return self._run(replay, timeout)

    def unserved(self, fila: str) -> str | None:
        """Why jobs sent to ``fila`` would wait, when no worker consumes it; None when one does."""
        return self._run(consumers.check(self._core._broker(), fila))


def _epoch(moment: datetime | float | None) -> float | None:
    return moment.timestamp() if isinstance(moment, datetime) else moment


def _json(text: str | None) -> Any:
    return json.loads(text) if text else None
