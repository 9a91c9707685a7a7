"""The asyncio orchestrator core: publish jobs, collect their results into the store.

``AsyncOrquestrador`` is the source of truth; :class:`orquestrador.facade.Orquestrador` wraps it
for scripts and notebooks. Results are read from this orchestrator's results queue
(``responder_para``) and acked only after the store committed them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Unpack

from orquestrador import collector, launching, settings, tracing
from orquestrador import envelope as wire
from orquestrador.brokers import Broker, create_broker, resolve_url
from orquestrador.brokers.base import Delivery, validate_results_queue
from orquestrador.envelope import Envelope, TipoEvento
from orquestrador.errors import BrokerError, EnvelopeError
from orquestrador.eventos import SUBJECT as EVENTS_SUBJECT
from orquestrador.eventos import EventoJob
from orquestrador.job_options import NO_OPTIONS, JobOptions, Timing
from orquestrador.messaging import AsyncMessaging
from orquestrador.pipeline import Pipeline, PipelineRunner
from orquestrador.plugins import queue_for
from orquestrador.store import JobRow, Store
from orquestrador.store.retention import Retencao
from orquestrador.topics.subscription import AsyncAssinatura
from orquestrador.vocabulary import FINAIS, KIND_OF

log = logging.getLogger("orquestrador")
CLOSE_WAIT = 5.0  # seconds close() gives each step that waits on the broker


async def _bounded(step: Awaitable[None], what: str) -> None:
    """One step of close(), given up (with a warning) if the broker does not answer: a client
    half-closed by an outage must not hang the notebook's close."""
    try:
        await asyncio.wait_for(step, 2 * CLOSE_WAIT)
    except TimeoutError:
        log.warning("%s took over %.0f s; given up", what, 2 * CLOSE_WAIT)


class AsyncOrquestrador(AsyncMessaging):
    """Launches jobs and records their results; one per notebook, script or service."""

    def __init__(
        self,
        url: str | None = None,
        *,
        responder_para: str | None = None,
        home: Path | None = None,
        max_message_bytes: int = wire.DEFAULT_MAX_BYTES,
        retencao: Retencao | None = None,
    ) -> None:
        self._requested_url = url
        self.url: str | None = None
        self.responder_para = validate_results_queue(
            settings.results_queue(responder_para) or wire.DEFAULT_RESULTS_QUEUE
        )
        self.home = home or settings.home()
        self.max_message_bytes = max_message_bytes
        self.store = Store(settings.store_path(self.home))
        self.store.check_writable()  # a read-only store fails here, not at the first launch
        self.health = collector.Health(self.store.path)
        # Read now, so a bad ORQ_RETENTION_* fails the constructor rather than a background task.
        self.retencao = retencao if retencao is not None else Retencao.from_env()
        self.broker: Broker | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._runners: list[PipelineRunner] = []
        self._closing = asyncio.Event()
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._events: list[EventoJob] = []
        self._unsubscribe: Callable[[], Any] | None = None
        self.listeners: list[Callable[[list[str]], None]] = []
        self._subscriptions: set[AsyncAssinatura] = set()  # cancelled by close()

    async def start(self) -> None:
        """Connect, and start collecting results and lifecycle events."""
        self.url = await asyncio.to_thread(resolve_url, self._requested_url)
        broker = create_broker(self.url)
        await broker.connect()
        self.broker = broker
        await broker.declare(self.responder_para)
        consumer_started = asyncio.Event()
        self._tasks.append(asyncio.create_task(self._collect(consumer_started)))
        await consumer_started.wait()
        self._unsubscribe = await broker.subscribe_events(EVENTS_SUBJECT, self._on_event)
        self._tasks.append(asyncio.create_task(self._flush_events()))
        if self.retencao.active:
            self._tasks.append(asyncio.create_task(self._retain()))

    async def close(self) -> None:
        self._closing.set()
        for runner in self._runners:
            runner.stop()
        for subscription in list(self._subscriptions):
            await subscription.cancelar()
        if self._unsubscribe is not None:
            with contextlib.suppress(BrokerError):
                await _bounded(self._unsubscribe(), "unsubscribing from the lifecycle events")
        # Loops see the flag within one fetch timeout; cancelling a blocked broker read instead
        # can leave a driver's connection half-closed (seen with redis-py), so cancel only stragglers.
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=CLOSE_WAIT)
            for task in pending:
                task.cancel()
            if pending:
                _, stuck = await asyncio.wait(pending, timeout=CLOSE_WAIT)
                for task in stuck:  # a driver call that ignores cancellation: close() goes on
                    log.warning("%s did not stop within %.0f s of being cancelled; left behind",
                                task.get_name(), CLOSE_WAIT)  # fmt: skip
        self._write_events()
        if self.broker is not None:
            await _bounded(self.broker.close(), "closing the broker connection")
        self.store.close()

    def _broker(self) -> Broker:
        if self.broker is None:
            raise BrokerError("the orchestrator is not started")
        return self.broker

    # -- launching -------------------------------------------------------------------------

    def _envelope(
        self,
        tipo: TipoEvento,
        alvo: str,
        payload: dict[str, Any],
        correlation_id: str | None,
        causation_id: str | None,
        headers: dict[str, str] | None,
        pipeline: str | None = None,
        span: tracing.Span | None = None,
        options: JobOptions = NO_OPTIONS,
    ) -> tuple[Envelope, bytes]:
        if not isinstance(payload, dict):
            raise EnvelopeError(f"payload must be a dict (JSON object), got {type(payload).__name__}")
        if span is not None:  # the trace of this job chain starts (or continues the caller's) here
            headers = {**headers, **span.headers} if headers else span.headers
        env = wire.nova(
            tipo, payload, alvo=alvo, correlation_id=correlation_id, causation_id=causation_id,
            responder_para=self.responder_para, headers=headers,
        )  # fmt: skip
        if not options.empty:
            env = env.with_changes(**options.fields())
        if pipeline is not None:
            # The pipeline's runner reads the result first, then forwards it to us.
            env = env.with_changes(responder_para=f"pipeline_{pipeline}", responder_final=self.responder_para)
        if span is not None and span.recording:
            span.set_attribute("messaging.message.id", env.message_id)
            span.set_attribute("orq.correlation_id", env.correlation_id)
        return env, wire.encode(env, max_bytes=self.max_message_bytes)

    def _publish_span(self, fila: str, headers: dict[str, str] | None) -> tracing.Span:
        attributes = tracing.messaging(self._broker().scheme, fila)
        return tracing.start(f"orq.publish {fila}", "producer", headers, attributes)

    async def iniciar(
        self,
        tipo: TipoEvento,
        alvo: str,
        payload: dict[str, Any],
        *,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        headers: dict[str, str] | None = None,
        pipeline: str | None = None,
        options: JobOptions | None = None,
        **timing: Unpack[Timing],
    ) -> Envelope:
        """Publish one ``iniciar_*`` envelope; returns once the broker holds it durably.

        ``timing`` (``prioridade``, ``atraso``/``executar_em``, ``ttl``/``expira_em``): see
        :mod:`orquestrador.job_options`; ``options`` passes them already checked.
        """
        fila = queue_for(KIND_OF[tipo], alvo)
        options = options or JobOptions.of(**timing)
        target = fila if options.empty else await self._broker().job_queue(fila, options)
        with self._publish_span(fila, headers) as span:
            env, body = self._envelope(
                tipo, alvo, payload, correlation_id, causation_id, headers, pipeline, span, options
            )
            # On the loop if the store is free, else in a thread (the collector may be writing).
            await collector.write(self.store, self._record_sent, env, fila, body)
            try:
                await self._broker().publish(target, body, message_id=env.message_id)
            except BaseException:
                self.store.forget([env.message_id or ""])
                raise
        return env

    def _record_sent(self, env: Envelope, fila: str, body: bytes) -> None:
        self.store.record_sent([env], fila, bodies=[body])

    async def iniciar_lote(
        self,
        tipo: TipoEvento,
        alvo: str,
        payloads: Iterable[dict[str, Any]],
        *,
        on_progress: Callable[[int], None] | None = None,
        chunk: int = 500,
        pipeline: str | None = None,
        lote: str | None = None,
        **timing: Unpack[Timing],
    ) -> list[Envelope]:
        """Publish many jobs, pipelined; each chunk is recorded before it is sent."""
        sent: list[Envelope] = []
        await self.lancar_lote(tipo, alvo, payloads, on_progress=on_progress, chunk=chunk,
                               pipeline=pipeline, lote=lote, on_sent=sent.extend, **timing)  # fmt: skip
        return sent

    async def lancar_lote(
        self,
        tipo: TipoEvento,
        alvo: str,
        payloads: Iterable[dict[str, Any]],
        *,
        on_progress: Callable[[int], None] | None = None,
        chunk: int = 500,
        pipeline: str | None = None,
        lote: str | None = None,
        on_sent: Callable[[list[Envelope]], None] | None = None,
        options: JobOptions | None = None,
        **timing: Unpack[Timing],
    ) -> int:
        """Like :meth:`iniciar_lote`, without keeping the envelopes: memory stays flat however many.

        ``lote`` tags every job in the store, so the batch is counted and listed from there.
        Returns how many jobs were published. A launch that stops part-way (a bad payload, the
        broker refusing a chunk) raises :class:`LaunchError` with ``lote`` and ``enviados``:
        every job sent is recorded; the rows of a chunk whose publish failed stay too, since
        some of it may have reached the broker. ``timing``/``options``: as :meth:`iniciar`, the
        same for every job of the batch (``atraso`` and ``ttl`` count from this call).
        """
        fila = queue_for(KIND_OF[tipo], alvo)
        options = options or JobOptions.of(**timing)
        target = fila if options.empty else await self._broker().job_queue(fila, options)

        def jobs() -> Iterator[tuple[Envelope, bytes, tracing.Span]]:
            for payload in payloads:  # each job starts its own trace; its span ends once confirmed
                span = self._publish_span(fila, None)
                env, body = self._envelope(tipo, alvo, payload, None, None, None, pipeline, span, options)
                yield env, body, span

        return await launching.launch(
            self.store, self._broker(), fila, jobs(), what=f"{tipo} for {alvo}", chunk=chunk, lote=lote,
            on_progress=on_progress, on_sent=on_sent, target=target,
        )  # fmt: skip

    async def run_pipeline(self, pipeline: Pipeline) -> None:
        """Run a pipeline's rules inside this orchestrator until it closes."""
        runner = PipelineRunner(self._broker(), pipeline, default_results=self.responder_para)
        self._runners.append(runner)
        self._tasks.append(asyncio.create_task(runner.run()))

    async def esperar_cadeia(self, correlation_id: str, timeout: float | None = None) -> dict[str, int]:
        """Wait until every job of the chain, children included, is final."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            counts = self.store.chain(correlation_id)
            if counts and all(estado in FINAIS for estado in counts):
                return counts
            if deadline is not None and loop.time() > deadline:
                raise TimeoutError
            await asyncio.sleep(0.1)

    # -- waiting ---------------------------------------------------------------------------

    async def esperar(self, message_id: str, timeout: float | None = None) -> JobRow | None:
        """Wait until the job reaches a final state; None if it is not known at all."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._waiters.setdefault(message_id, []).append(future)
        try:
            row = self.store.job(message_id)
            if row is None or row.estado in FINAIS:
                return row
            await asyncio.wait_for(future, timeout)
            return self.store.job(message_id)
        finally:
            waiters = self._waiters.get(message_id, [])
            if future in waiters:
                waiters.remove(future)
            if not waiters:
                self._waiters.pop(message_id, None)

    def _wake(self, finished: list[str]) -> None:
        for message_id in finished:
            for future in self._waiters.pop(message_id, []):
                if not future.done():
                    future.set_result(None)
        for listener in self.listeners:
            listener(finished)

    # -- collecting results and events -----------------------------------------------------

    async def _collect(self, started: asyncio.Event) -> None:
        broker = self._broker()
        consumer = await broker.consume(self.responder_para, visibility_timeout=60.0, prefetch=256)
        started.set()
        backoff = collector.Backoff()
        held: list[Delivery] = []  # fetched and not yet settled: handed back if close() cancels us
        try:
            while not self._closing.is_set():
                try:
                    held = await consumer.fetch(256, timeout=0.5)
                except BrokerError as exc:
                    log.warning("reading results failed (%s); retrying", exc)
                    await asyncio.sleep(1.0)
                    continue
                if not held:
                    continue
                # Nothing a result carries, and no store failure, ends this task (see collector).
                try:
                    await self._record(held)
                    backoff.reset()
                except collector.StoreDown:
                    await self._pause(backoff.next())
                except Exception:
                    delay = backoff.next()
                    log.exception(
                        "recording %d results failed unexpectedly; going on in %.1fs", len(held), delay
                    )
                    await collector.release(held)
                    await self._pause(delay)
                held = []
        finally:
            if held:  # close() gave up waiting (a store write stuck): hand them back right away
                await collector.release(held)
            await consumer.close()

    async def _pause(self, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), delay)

    async def _record(self, batch: list[Delivery]) -> None:
        """Record a batch of results, dead-letter what cannot be, ack the rest once stored.

        Raises :class:`collector.StoreDown` (after handing the batch back) when the store fails.
        """
        good: list[tuple[Delivery, Envelope]] = []
        refused: list[tuple[Delivery, str]] = []
        for delivery in batch:
            try:
                if delivery.problem is not None:  # unreadable broker fields (brokers.intake)
                    raise EnvelopeError(delivery.problem)
                env = wire.decode(delivery.body, max_bytes=self.max_message_bytes)
                if env.is_request:
                    raise EnvelopeError(f"{env.tipo_evento} sent to a results queue")
            except EnvelopeError as exc:
                log.warning("dead-lettering bad result on %s: %s", delivery.queue, exc.reason)
                with contextlib.suppress(BrokerError):  # if not, it comes back and is refused again
                    await delivery.dead_letter(exc.reason, error_type=type(exc).__name__)
                continue
            good.append((delivery, env))
        finished: list[str] = []
        if good:  # in a thread: launches and event handling go on while SQLite writes
            try:
                finished, refused = await collector.record_results(self.store, self.health, good)
            except collector.StoreDown:
                await collector.release([d for d, _ in good])
                raise
        # Stored is final: whoever waits on these jobs needs no broker round trip more.
        if finished:
            self._wake(finished)
        await collector.settle_refused(refused)
        stored = [d for d, _ in good if all(d is not r for r, _ in refused)]
        failed = await self._broker().ack_many(stored)
        if failed:
            log.warning("%d result acks failed; those results will be redelivered (and deduplicated)", failed)

    async def _retain(self) -> None:
        """Apply the retention policy now and every ``interval``, in a thread: the loop stays free."""
        policy = self.retencao
        age = None if policy.max_age is None else float(policy.max_age)
        while not self._closing.is_set():
            try:
                report = await asyncio.to_thread(
                    self.store.prune, age, policy.max_jobs, stop=self._closing.is_set
                )
            except sqlite3.Error as exc:
                log.warning("pruning the store failed (%s); retrying in %ss", exc, policy.interval)
            else:
                if report.jobs:
                    log.info("retention: pruned %d finished jobs (%d envelopes, %d events, %d parts)",
                             report.jobs, report.envelopes, report.eventos, report.partes)  # fmt: skip
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), policy.interval)

    def _on_event(self, body: bytes) -> None:
        self._events.extend(EventoJob.decode_many(body))

    async def _flush_events(self) -> None:
        backoff = collector.Backoff()
        while not self._closing.is_set():
            await self._pause(0.05)
            if self._events:
                events, self._events = self._events, []
                try:
                    kept = await collector.record_events(self.store, self.health, events)
                except Exception:  # never a silently dead writer (write_events sorts out the known)
                    log.exception("recording %d lifecycle events failed unexpectedly", len(events))
                    kept = []
                if kept:  # the store is down: keep them for the next try, newest first to go
                    self._events = (kept + self._events)[-collector.MAX_PENDING_EVENTS :]
                    await self._pause(backoff.next())
                else:
                    backoff.reset()

    def _write_events(self) -> None:
        if self._events:
            events, self._events = self._events, []
            if collector.write_events(self.store, self.health, events):
                log.error(
                    "%d lifecycle events not recorded at close: the store cannot be written", len(events)
                )

    def saude(self) -> collector.Saude:
        """Whether the store is being written; the failure and since when, if not."""
        return self.health.state
