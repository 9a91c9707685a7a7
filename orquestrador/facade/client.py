"""``Orquestrador``: launch jobs and batches, run pipelines, open the notebook widgets.

What it reads (results, aggregates, queues) is in :mod:`orquestrador.facade.reads`, topics and
request-reply in :mod:`orquestrador.facade.messaging`, how a sync
call reaches the asyncio core in :mod:`orquestrador.facade.session`, and the handles it returns
in :mod:`orquestrador.facade.handles`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sized
from pathlib import Path
from typing import TYPE_CHECKING, Any, Unpack

from orquestrador import consumers
from orquestrador import envelope as wire
from orquestrador.collector import Saude
from orquestrador.envelope import TipoEvento
from orquestrador.errors import JobTimeout, LaunchError
from orquestrador.facade.agendas import AgendaMethods
from orquestrador.facade.handles import Job, Lote
from orquestrador.facade.messaging import Messaging
from orquestrador.facade.reads import Reads
from orquestrador.job_options import JobOptions, Timing
from orquestrador.orchestrator import AsyncOrquestrador
from orquestrador.pipeline import Pipeline
from orquestrador.plugins import queue_for
from orquestrador.settings import redact_url
from orquestrador.store.retention import Retencao
from orquestrador.vocabulary import KIND_OF, is_request

if TYPE_CHECKING:
    import pandas as pd


class Orquestrador(Reads, AgendaMethods, Messaging):
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
        super().__init__(
            AsyncOrquestrador(
                url,
                responder_para=responder_para,
                home=Path(home) if home is not None else None,
                max_message_bytes=max_message_bytes,
                retencao=retencao,
            )
        )

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
        **timing: Unpack[Timing],
    ) -> Job:
        """Ask escavador ``escavador`` to collect; returns at once with a Job to watch.

        With ``pipeline``, its rules launch the next jobs of the chain when this one is ok.
        ``prioridade`` (0-9, 9 the most urgent), ``atraso`` (seconds) or ``executar_em`` (an
        aware datetime), ``ttl`` (seconds) or ``expira_em``: when and in what order it runs; a
        job not started by its deadline is never run and ends as ``erro`` (see the README).
        """
        return self._iniciar("iniciar_coleta", escavador, payload, correlation_id, pipeline, timing)

    def iniciar_execucao(
        self,
        executor: str,
        payload: dict[str, Any],
        correlation_id: str | None = None,
        *,
        pipeline: Pipeline | str | None = None,
        **timing: Unpack[Timing],
    ) -> Job:
        """Ask executor ``executor`` to act; pass a coleta's correlation_id to chain them.

        ``timing``: as :meth:`iniciar_coleta`."""
        return self._iniciar("iniciar_execucao", executor, payload, correlation_id, pipeline, timing)

    def _iniciar(
        self,
        tipo: TipoEvento,
        alvo: str,
        payload: dict[str, Any],
        correlation_id: str | None,
        pipeline: Pipeline | str | None,
        timing: Timing,
    ) -> Job:
        options = JobOptions.of(**timing)  # checked here: a bad option fails in the caller's cell
        env = self._run(
            self._core.iniciar(
                tipo, alvo, payload, correlation_id=correlation_id, pipeline=_name(pipeline), options=options
            )
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
        **timing: Unpack[Timing],
    ) -> Lote:
        """Launch many coletas (a list, a generator, or a DataFrame column of dicts).

        ``timing`` (as :meth:`iniciar_coleta`) applies to every job; ``atraso`` and ``ttl``
        count from this call."""
        return self._lote("iniciar_coleta", escavador, payloads, progress, _name(pipeline), timing)

    def iniciar_execucoes(
        self,
        executor: str,
        payloads: Iterable[dict[str, Any]],
        *,
        progress: bool = True,
        pipeline: Pipeline | str | None = None,
        **timing: Unpack[Timing],
    ) -> Lote:
        return self._lote("iniciar_execucao", executor, payloads, progress, _name(pipeline), timing)

    def _lote(
        self,
        tipo: TipoEvento,
        alvo: str,
        payloads: Iterable[dict[str, Any]],
        progress: bool,
        pipeline: str | None,
        timing: Timing,
    ) -> Lote:
        options = JobOptions.of(**timing)  # before anything is sent
        lote = wire.new_id()
        try:
            return Lote(self, lote, self._launch(tipo, alvo, payloads, progress, pipeline, lote, options))
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
        options: JobOptions,
    ) -> int:
        """Publish the batch, behind a progress bar unless ``progress`` is False; how many went out."""
        if not progress:
            return self._run(
                self._core.lancar_lote(tipo, alvo, payloads, pipeline=pipeline, lote=lote, options=options)
            )
        from rich.progress import Progress

        items = payloads if isinstance(payloads, Sized) else list(payloads)
        with Progress(transient=True) as bar:
            task = bar.add_task(f"launching {tipo} for {alvo}", total=len(items))
            advance = lambda n: bar.advance(task, n)  # noqa: E731
            return self._run(
                self._core.lancar_lote(
                    tipo, alvo, items, on_progress=advance, pipeline=pipeline, lote=lote, options=options
                )
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

    def topicos(self, padrao: str, n: int = 20, duravel: str | None = None) -> Any:
        """A live table of the last ``n`` messages on the topics ``padrao`` matches (e.g.
        ``orq.resultado_coleta.*``), with a button that cancels its subscription."""
        from orquestrador.notebook import topicos

        self._check_open()
        return topicos(self, padrao, n, duravel)


def _name(pipeline: Pipeline | str | None) -> str | None:
    return pipeline.nome if isinstance(pipeline, Pipeline) else pipeline
