"""What watches a worker: metrics, lifecycle events and tracing, as one list of observers.

The runtime tells every observer what happens to each job — received, started, failed, retried,
dead-lettered, finished — instead of calling metrics, events and spans one by one in its loop.
An observer overrides the hooks it cares about; the others do nothing. A hook must return at
once and never raise: it runs on the worker's event loop, in the middle of settling a job.

Order of the hooks for one delivery: ``received`` → (intake) → ``started`` → ``handled`` →
``failed`` → ``retried`` | ``dead_lettered`` | ``succeeded`` → ``finished`` → ``closed``
(``progress`` any time while it runs). A delivery refused at intake gets only ``received``; one
dead-lettered before it runs (its worker kept dying) gets ``dead_lettered`` and ``closed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from orquestrador import eventos, settings
from orquestrador.envelope import to_dict
from orquestrador.errors import BrokerError
from orquestrador.eventos import Evento, EventoJob
from orquestrador.worker import topics

if TYPE_CHECKING:
    from orquestrador.brokers.base import Broker
    from orquestrador.envelope import Erro
    from orquestrador.plugins import Plugin
    from orquestrador.worker.metrics import NoMetrics
    from orquestrador.worker.settling import Job

log = logging.getLogger("orquestrador.worker")

HOOKS = (
    "received", "started", "progress", "handled", "failed", "succeeded", "retried",
    "dead_lettered", "finished", "closed", "fetch_recovered",
)  # fmt: skip


class Observer:
    """Every hook does nothing; subclasses override what they watch."""

    def serving(self, broker: Broker) -> None:
        """The worker starts serving (a task an observer starts here ends in :meth:`stopping`)."""

    async def stopping(self) -> None:
        """The worker stops: flush what is pending, cancel what was started."""

    def received(self, plugin: Plugin) -> None: ...
    def started(self, job: Job) -> None: ...
    def progress(self, job: Job, fraction: float, note: str | None) -> None: ...
    def handled(self, job: Job, seconds: float) -> None: ...
    def failed(self, job: Job, exc: BaseException) -> None: ...
    def succeeded(self, job: Job) -> None: ...
    def retried(self, job: Job, erro: Erro, delay: float) -> None: ...
    def dead_lettered(self, job: Job, erro: Erro) -> None: ...
    def finished(self, job: Job) -> None: ...
    def closed(self, job: Job) -> None: ...
    def fetch_recovered(self) -> None: ...


class Observers:
    """The worker's observers, each hook bound once to those that override it (a hot path)."""

    def __init__(self, observers: Sequence[Observer]) -> None:
        self.all = list(observers)
        calls: dict[str, list[Any]] = {
            hook: [getattr(o, hook) for o in self.all if _overrides(o, hook)] for hook in HOOKS
        }
        self.received, self.started, self.progress = calls["received"], calls["started"], calls["progress"]
        self.handled, self.failed, self.succeeded = calls["handled"], calls["failed"], calls["succeeded"]
        self.retried, self.dead_lettered = calls["retried"], calls["dead_lettered"]
        self.finished, self.closed = calls["finished"], calls["closed"]
        self.fetch_recovered = calls["fetch_recovered"]


def _overrides(observer: Observer, hook: str) -> bool:
    return getattr(type(observer), hook) is not getattr(Observer, hook)


class Tracing(Observer):
    """Ends each job's ``orq.handle`` span, marked as an error when its handler failed.

    The span itself starts at intake: its ids travel in the result's ``traceparent``.
    """

    def failed(self, job: Job, exc: BaseException) -> None:
        job.span.fail(exc)

    def closed(self, job: Job) -> None:
        job.span.end()


class Metrics(Observer):
    """Prometheus counters per alvo (only when a worker is scraped: see ``metrics.for_worker``)."""

    DEPTH_EVERY = 10.0  # seconds between readings of the queues' depth

    def __init__(self, recorder: NoMetrics, plugins: Sequence[Plugin] = ()) -> None:
        self.recorder = recorder
        self.plugins = list(plugins)
        self._broker: Broker | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._depths: asyncio.Task[None] | None = None

    def serving(self, broker: Broker) -> None:
        self._broker = broker
        self._watcher = self.recorder.watch(broker)
        if self.recorder.enabled and self.plugins:
            self._depths = asyncio.create_task(self._follow_depths())

    async def stopping(self) -> None:
        for task in (self._watcher, self._depths):
            if task is not None:
                task.cancel()

    async def sample_depths(self) -> None:
        """Each plugin queue's depth (``stats().depth``: on Kafka the consumer group's lag)."""
        if self._broker is None:
            return
        for plugin in self.plugins:
            try:
                stats = await self._broker.stats(plugin.fila)
            except BrokerError as exc:
                log.debug("depth of %s not read: %s", plugin.fila, exc)
                continue
            self.recorder.queue_depth(plugin.nome, stats.depth)

    async def _follow_depths(self) -> None:
        while True:
            await self.sample_depths()
            await asyncio.sleep(self.DEPTH_EVERY)

    def received(self, plugin: Plugin) -> None:
        self.recorder.received(plugin.nome)

    def started(self, job: Job) -> None:
        self.recorder.started(job.plugin.nome)

    def handled(self, job: Job, seconds: float) -> None:
        self.recorder.handled(job.plugin.nome, seconds)

    def failed(self, job: Job, exc: BaseException) -> None:
        self.recorder.failed(job.plugin.nome)

    def succeeded(self, job: Job) -> None:
        self.recorder.ok(job.plugin.nome)

    def retried(self, job: Job, erro: Erro, delay: float) -> None:
        self.recorder.retried(job.plugin.nome)

    def dead_lettered(self, job: Job, erro: Erro) -> None:
        self.recorder.dead_lettered(job.plugin.nome)

    def finished(self, job: Job) -> None:
        self.recorder.finished(job.plugin.nome)

    def fetch_recovered(self) -> None:
        self.recorder.fetch_recovered(self._broker)


class Events(Observer):
    """Lifecycle events (``orq.eventos``, best effort) so live views show jobs running.

    Sent in batches every ``eventos.FLUSH_SECONDS``: one broker message per job was a tenth of a
    worker's CPU. A job's end is its durable ``resultado_*``, so there is no "done" event.
    The same batch carries the toolkit's topics (results and events, :mod:`.topics`).
    """

    def __init__(self, broker: Broker, worker_id: str) -> None:
        self.broker = broker
        self.worker_id = worker_id
        self._events: list[EventoJob] = []  # waiting for the next batch
        self._flusher: asyncio.Task[None] | None = None
        self._result_topics, self._event_topics = settings.toolkit_topics()
        self._results: list[tuple[Job, bytes]] = []  # result envelopes to copy onto their topics

    async def stopping(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
        if self._events or self._results:  # the last events (retries, dead letters) still reach live views
            with contextlib.suppress(asyncio.CancelledError):
                await self._flush(0)

    def started(self, job: Job) -> None:
        self._emit(job, "iniciado")

    def progress(self, job: Job, fraction: float, note: str | None) -> None:
        self._emit(job, "progresso", {"fracao": fraction, "nota": note})

    def retried(self, job: Job, erro: Erro, delay: float) -> None:
        self._emit(job, "retry", {"erro": to_dict(erro), "atraso": delay})

    def dead_lettered(self, job: Job, erro: Erro) -> None:
        self._emit(job, "dead_letter", {"erro": to_dict(erro)})
        self._result(job)

    def succeeded(self, job: Job) -> None:
        self._result(job)

    def _result(self, job: Job) -> None:
        if self._result_topics and job.delivery.reply is not None:
            self._results.append((job, job.delivery.reply))
            self._schedule()

    def _emit(self, job: Job, evento: Evento, detalhe: dict[str, Any] | None = None) -> None:
        self._events.append(EventoJob(
            evento=evento,
            correlation_id=job.envelope.correlation_id,
            message_id=job.envelope.message_id or "",
            alvo=job.plugin.nome,
            worker=self.worker_id,
            tentativa=job.attempt,
            detalhe=detalhe or {},
        ))  # fmt: skip
        self._schedule()

    def _schedule(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(eventos.FLUSH_SECONDS))

    async def _flush(self, delay: float) -> None:
        """Send the events gathered meanwhile as one message (an object when there is one)."""
        await asyncio.sleep(delay)
        while self._events or self._results:
            batch, self._events = self._events[: eventos.MAX_BATCH], self._events[eventos.MAX_BATCH :]
            results, self._results = self._results[: eventos.MAX_BATCH], self._results[eventos.MAX_BATCH :]
            encoded = [event.encode() for event in batch]  # once: for orq.eventos and the topics
            if batch:
                body = encoded[0] if len(batch) == 1 else b"[" + b",".join(encoded) + b"]"
                try:
                    await asyncio.wait_for(self.broker.publish_event(eventos.SUBJECT, body), 2)
                except (BrokerError, TimeoutError) as exc:
                    log.debug("%d lifecycle events dropped: %s", len(batch), exc)
            await self._publish_topics(batch, encoded, results)

    async def _publish_topics(
        self, batch: list[EventoJob], encoded: list[bytes], results: list[tuple[Job, bytes]]
    ) -> None:
        at = topics.now()
        made = [topics.result_body(job, reply, at) for job, reply in results]
        if self._event_topics:
            made += [topics.event_body(event, data, at) for event, data in zip(batch, encoded, strict=True)]
        await topics.publish(self.broker, [m for m in made if m is not None])
