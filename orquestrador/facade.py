"""The synchronous API for scripts and notebooks: ``Orquestrador``, ``Job`` and ``Lote``.

Every call runs the asyncio core on a private loop thread, so it works the same in a plain
script and inside Jupyter's running loop. pandas is imported only by the methods that return
DataFrames, so workers that import the package stay small.
"""

from __future__ import annotations

import atexit
import json
import logging
import sys
import time
import weakref
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sized
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from orquestrador import consumers, operations
from orquestrador import envelope as wire
from orquestrador.brokers.base import Message, QueueStats
from orquestrador.collector import Saude
from orquestrador.envelope import Envelope, TipoEvento
from orquestrador.errors import ClosedError, JobTimeout, LaunchError
from orquestrador.loop_thread import LoopThread
from orquestrador.orchestrator import AsyncOrquestrador
from orquestrador.pipeline import Pipeline
from orquestrador.plugins import queue_for
from orquestrador.settings import redact_url
from orquestrador.store import JobRow, jobs_filter, stats
from orquestrador.store.retention import Retencao
from orquestrador.store.stats import Throughput
from orquestrador.vocabulary import FALHAS, FINAIS, KIND_OF, is_request

if TYPE_CHECKING:
    import pandas as pd

T = TypeVar("T")


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
                f"status {self.status!r}. Is a worker running for it (orq worker ...)?"
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


class Orquestrador:
    """Launch jobs and read their results, from a script or a notebook.

    ``url`` picks the broker (``nats://``, ``redis://``, ``amqp://``, ``memory://``); without one,
    ``ORQ_BROKER_URL`` or else the embedded NATS server is used. ``responder_para`` names this
    orchestrator's results queue: give each person or project sharing a broker its own.
    ``retencao`` bounds the store (default: ``ORQ_RETENTION_AGE``/``ORQ_RETENTION_JOBS``, else
    keep everything); see :class:`orquestrador.Retencao`.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        responder_para: str | None = None,
        home: str | Path | None = None,
        max_message_bytes: int = wire.DEFAULT_MAX_BYTES,
        retencao: Retencao | None = None,
    ) -> None:
        self._loop = LoopThread()
        self._closing = False
        self._core = AsyncOrquestrador(
            url,
            responder_para=responder_para,
            home=Path(home) if home is not None else None,
            max_message_bytes=max_message_bytes,
            retencao=retencao,
        )
        try:
            self._loop.run(self._core.start())
        except BaseException:
            self._loop.run(self._core.close())
            self._loop.stop()
            raise
        _open.add(self)

    @property
    def url(self) -> str:
        return redact_url(self._core.url or "")

    @property
    def responder_para(self) -> str:
        return self._core.responder_para

    def __repr__(self) -> str:
        return f"Orquestrador(url={self.url!r}, responder_para={self.responder_para!r})"

    def saude(self) -> Saude:
        """Whether results are being recorded: ``ok``, else the store's failure and since when.

        While the store cannot be written (disk full, read-only, locked), results wait on the
        broker and the collector retries; the dashboard and ``orq stats`` show this too.
        """
        return self._core.saude()

    def __enter__(self) -> Orquestrador:
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

    def _warn_unserved(self, tipo: str, alvo: str | None) -> None:
        """Warn (in the calling cell) if no worker consumes the queue of ``alvo``'s jobs."""
        if alvo is None or not is_request(tipo):
            return
        fila = queue_for(KIND_OF[tipo], alvo)
        message = self._run(consumers.check(self._core._broker(), fila))
        if message is not None:
            after = consumers.WAIT_WARN_AFTER
            consumers.warn(f"nothing started after {after:.0f} s: {message}", stacklevel=4)

    # -- launching -------------------------------------------------------------------------

    def iniciar_coleta(
        self,
        escavador: str,
        payload: dict[str, Any],
        *,
        correlation_id: str | None = None,
        pipeline: Pipeline | str | None = None,
    ) -> Job:
        """Ask escavador ``escavador`` to collect; returns at once with a Job to watch.

        With ``pipeline``, its rules launch the next jobs of the chain when this one is ok.
        """
        return self._iniciar("iniciar_coleta", escavador, payload, correlation_id, pipeline)

    def iniciar_execucao(
        self,
        executor: str,
        payload: dict[str, Any],
        correlation_id: str | None = None,
        *,
        pipeline: Pipeline | str | None = None,
    ) -> Job:
        """Ask executor ``executor`` to act; pass a coleta's correlation_id to chain them."""
        return self._iniciar("iniciar_execucao", executor, payload, correlation_id, pipeline)

    def _iniciar(
        self,
        tipo: TipoEvento,
        alvo: str,
        payload: dict[str, Any],
        correlation_id: str | None,
        pipeline: Pipeline | str | None,
    ) -> Job:
        env = self._run(
            self._core.iniciar(tipo, alvo, payload, correlation_id=correlation_id, pipeline=_name(pipeline))
        )
        return Job.of(self, env)

    # -- pipelines -------------------------------------------------------------------------

    def pipeline(self, pipeline: Pipeline) -> Pipeline:
        """Run ``pipeline``'s rules in this process while it is open.

        To keep them running after the notebook closes, run ``orq worker pipeline NAME`` too.
        """
        self._run(self._core.run_pipeline(pipeline))
        return pipeline

    def cadeia(self, correlation_id: str) -> dict[str, int]:
        """How many jobs of the chain are in each state (children of fan-outs included)."""
        return self._core.store.chain(correlation_id)

    def esperar_cadeia(self, correlation_id: str, timeout: float | None = None) -> dict[str, int]:
        """Block until every job of the chain is final, e.g. all pages of a crawl."""
        try:
            return self._run(self._core.esperar_cadeia(correlation_id, timeout))
        except TimeoutError:
            raise JobTimeout(
                f"chain {correlation_id} not finished after {timeout}s: {self.cadeia(correlation_id)}"
            ) from None

    def iniciar_coletas(
        self,
        escavador: str,
        payloads: Iterable[dict[str, Any]],
        *,
        progress: bool = True,
        pipeline: Pipeline | str | None = None,
    ) -> Lote:
        """Launch many coletas (a list, a generator, or a DataFrame column of dicts)."""
        return self._lote("iniciar_coleta", escavador, payloads, progress, _name(pipeline))

    def iniciar_execucoes(
        self,
        executor: str,
        payloads: Iterable[dict[str, Any]],
        *,
        progress: bool = True,
        pipeline: Pipeline | str | None = None,
    ) -> Lote:
        return self._lote("iniciar_execucao", executor, payloads, progress, _name(pipeline))

    def _lote(
        self,
        tipo: TipoEvento,
        alvo: str,
        payloads: Iterable[dict[str, Any]],
        progress: bool,
        pipeline: str | None,
    ) -> Lote:
        lote = wire.new_id()
        try:
            return Lote(self, lote, self._launch(tipo, alvo, payloads, progress, pipeline, lote))
        except LaunchError as exc:
            exc.lote = self.lote(lote) or Lote(self, lote, 0)  # what got recorded, to wait for
            raise
        except KeyboardInterrupt as exc:
            recorded = sum(self._core.store.count_lote(lote).values())
            exc.add_note(f"{recorded} jobs of this launch are recorded as batch {lote!r}: orq.lote({lote!r})")
            raise

    def _launch(
        self,
        tipo: TipoEvento,
        alvo: str,
        payloads: Iterable[dict[str, Any]],
        progress: bool,
        pipeline: str | None,
        lote: str,
    ) -> int:
        """Publish the batch, behind a progress bar unless ``progress`` is False; how many went out."""
        if not progress:
            return self._run(self._core.lancar_lote(tipo, alvo, payloads, pipeline=pipeline, lote=lote))
        from rich.progress import Progress

        items = payloads if isinstance(payloads, Sized) else list(payloads)
        with Progress(transient=True) as bar:
            task = bar.add_task(f"launching {tipo} for {alvo}", total=len(items))
            advance = lambda n: bar.advance(task, n)  # noqa: E731
            return self._run(
                self._core.lancar_lote(tipo, alvo, items, on_progress=advance, pipeline=pipeline, lote=lote)
            )

    def job(self, message_id: str) -> Job | None:
        """A job launched earlier (even before a kernel restart), from its message_id."""
        row = self._core.store.job(message_id)
        if row is None:
            return None
        return Job(self, row.message_id, row.correlation_id, row.alvo, row.tipo_evento)

    def lote(self, lote_id: str) -> Lote | None:
        """A batch launched earlier (even before a kernel restart), from its ``Lote.id``."""
        size = sum(self._core.store.count_lote(lote_id).values())
        return Lote(self, lote_id, size) if size else None

    def lotes(self) -> pd.DataFrame:
        """Every batch in the store, oldest first: its id, what it ran, jobs by state, when.

        After a kernel restart this is where a batch's id is found again (``orq.lote(id)``).
        ``concluido_em`` is set once every job of the batch is final.
        """
        from orquestrador.analysis import lotes_frame

        return lotes_frame(self._core.store.lotes())

    # -- analysis --------------------------------------------------------------------------

    def resultados(
        self,
        alvo: str | None = None,
        *,
        status: str | list[str] | None = None,
        desde: datetime | None = None,
        ate: datetime | None = None,
    ) -> pd.DataFrame:
        """One row per job, payload and result flattened into columns; typed times."""
        return self._frame(
            alvo=alvo,
            estado=status,
            desde=desde.timestamp() if desde else None,
            ate=ate.timestamp() if ate else None,
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

    # -- notebook widgets (ipywidgets is imported only here, lazily) -----------------------

    def painel(self, dados: pd.DataFrame | None = None) -> Any:
        """A live dashboard: launch jobs, watch counts and queues, replay dead letters.

        With ``dados``, its launcher can send one job per row of a column of that DataFrame.
        """
        from orquestrador.notebook import painel

        self._check_open()
        return painel(self, dados=dados)

    def rastreio(self, correlation_id: str) -> Any:
        """A live timeline of one chain (``rastrear`` gives the same as a DataFrame)."""
        from orquestrador.notebook import rastreio

        self._check_open()
        return rastreio(self, correlation_id)


_open: weakref.WeakSet[Orquestrador] = weakref.WeakSet()


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


def _epoch(moment: datetime | float | None) -> float | None:
    return moment.timestamp() if isinstance(moment, datetime) else moment


def _json(text: str | None) -> Any:
    return json.loads(text) if text else None


def _name(pipeline: Pipeline | str | None) -> str | None:
    return pipeline.nome if isinstance(pipeline, Pipeline) else pipeline


def _widget_bundle(widget: Any, text: str, include: Any, exclude: Any) -> dict[str, Any]:
    bundle = widget._repr_mimebundle_(include=include, exclude=exclude) or {}
    data = bundle[0] if isinstance(bundle, tuple) else bundle
    return {**data, "text/plain": text}
