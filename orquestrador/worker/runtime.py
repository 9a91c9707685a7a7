"""The worker runtime: fetch, run the handler, answer, and settle every delivery exactly once.

One loop per plugin queue fetches as many messages as it has free slots. Each delivery goes
through the same steps:

1. **intake** — decode and check the envelope; anything invalid goes straight to ``<fila>.dlq``
   with the reason (a worker never crashes on input);
2. **run** — the handler, async on the loop or sync in a thread pool, with a timeout, while a
   heartbeat task owned by the runtime (not the handler) renews the lease;
3. **settle** — on success publish the ``resultado_*`` durably *then* ack; on failure nack with
   exponential backoff and jitter, or, after ``max_tentativas`` or a permanent failure, answer
   with ``status: erro`` and dead-letter it (:mod:`~orquestrador.worker.settling`).

What happens to each job is told to one list of observers (:mod:`~orquestrador.worker.observers`:
tracing, lifecycle events, metrics, and any the caller adds); calling the handler itself is
:mod:`~orquestrador.worker.handler`'s. The attempt number is the broker's own delivery count, so
it survives worker restarts. On SIGINT/SIGTERM the worker stops fetching, lets in-flight jobs
finish for ``drain_timeout`` seconds, releases the rest (nack) and closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from orquestrador import envelope as wire
from orquestrador import tracing
from orquestrador.brokers.base import Broker, Delivery, validate_results_queue
from orquestrador.brokers.support import lanes
from orquestrador.errors import (
    BrokerError,
    ConfigError,
    EnvelopeError,
    PermanentFailure,
    WorkerLost,
)
from orquestrador.logs import job_fields
from orquestrador.plugins import Plugin
from orquestrador.worker import batching, gate, handler
from orquestrador.worker.context import Contexto, JobLogger
from orquestrador.worker.metrics import NO_METRICS, NoMetrics
from orquestrador.worker.observers import Events, Metrics, Observer, Observers, Tracing
from orquestrador.worker.options import WorkerOptions
from orquestrador.worker.settling import Job, Settler

log = logging.getLogger("orquestrador.worker")


class Worker:
    """Serves one or more plugins from one broker connection."""

    def __init__(
        self,
        broker: Broker,
        plugins: Sequence[Plugin],
        options: WorkerOptions | None = None,
        *,
        worker_id: str | None = None,
        metrics: NoMetrics | None = None,
        observers: Sequence[Observer] = (),
    ) -> None:
        """``metrics`` records Prometheus counters (``orq worker --metrics-port``); ``observers``
        are told what happens to each job, after tracing, lifecycle events and metrics."""
        if not plugins:
            raise ValueError("a worker needs at least one plugin")
        self.broker = broker
        self.plugins = list(plugins)
        self.options = options or WorkerOptions()
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._stopping = asyncio.Event()
        self._cancel = threading.Event()
        threads = sum(self._concurrency(p) for p in self.plugins if not p.is_async)
        self._pool = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="orq-job")
        self._publisher = batching.Publisher(broker)  # results and acks of jobs finishing together
        self._acker = batching.Acker(broker)  # leave in one round trip (group commit)
        self._running: dict[Job, float] = {}  # jobs whose lease the heartbeat loop renews
        self._beater: asyncio.Task[None] | None = None
        watching: list[Observer] = [Tracing(), Events(broker, self.worker_id)]
        if metrics is not None and metrics is not NO_METRICS:  # nobody scrapes: nothing to count
            watching.append(Metrics(metrics, self.plugins))
        self._watch = Observers([*watching, *observers])
        self._settle = Settler(self.options, self.worker_id, broker.scheme, self._publisher, self._acker,
                               self._watch, self._max_tentativas)  # fmt: skip

    # -- lifecycle -------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the worker to drain: stop fetching, finish in-flight jobs, then return."""
        self._stopping.set()

    async def run(self) -> None:
        """Serve until :meth:`stop` (or a signal, with :meth:`run_until_signal`)."""
        job_fields.set({"worker": self.worker_id})  # inherited by the tasks started below
        for observer in self._watch.all:
            observer.serving(self.broker)
        try:
            await asyncio.gather(*(self._serve(p) for p in self.plugins))
        finally:
            if self._beater is not None:
                self._beater.cancel()
                self._beater = None
            for observer in self._watch.all:
                await observer.stopping()
            self._pool.shutdown(wait=False, cancel_futures=True)

    async def run_until_signal(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            await self.run()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        log.info("%s received: draining (finishing in-flight jobs)", sig.name)
        self.stop()

    def _concurrency(self, plugin: Plugin) -> int:
        return plugin.concurrency or self.options.concurrency

    def _max_tentativas(self, plugin: Plugin) -> int:
        return plugin.max_tentativas or self.options.max_tentativas

    # -- fetch loop ------------------------------------------------------------------------

    async def _serve(self, plugin: Plugin) -> None:
        limit = self._concurrency(plugin)
        consumer = await lanes.consume(  # the queue and, where the broker needs them, its priority lanes
            self.broker, plugin.fila, visibility_timeout=self.options.visibility_timeout, prefetch=limit
        )
        log.info("serving %s (concurrency %d) as %s", plugin.fila, limit, self.worker_id)
        running: set[asyncio.Task[None]] = set()
        failures = 0
        try:
            while not self._stopping.is_set():
                free = limit - len(running)
                if free <= 0:
                    await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                    continue
                try:
                    batch = await consumer.fetch(free, timeout=self.options.fetch_timeout)
                    if failures:
                        for hook in self._watch.fetch_recovered:
                            hook()
                    failures = 0
                except BrokerError as exc:
                    failures += 1
                    delay = min(5.0, 0.25 * 2 ** min(failures, 5))
                    log.warning("fetch from %s failed (%s); retrying in %.1fs", plugin.fila, exc, delay)
                    if await self._back_off(delay):
                        failures = 0  # the broker is back: fetch now, and back off from the start
                    continue
                for delivery in batch:
                    task = asyncio.create_task(self._handle(plugin, delivery))
                    running.add(task)
                    task.add_done_callback(running.discard)
            await self._drain(running)
        finally:
            await consumer.close()

    async def _drain(self, running: set[asyncio.Task[None]]) -> None:
        if not running:
            return
        log.info("waiting up to %.0fs for %d in-flight jobs", self.options.drain_timeout, len(running))
        _, pending = await asyncio.wait(running, timeout=self.options.drain_timeout)
        if pending:
            self._cancel.set()
            for task in pending:
                task.cancel()  # _handle releases the delivery (nack) when cancelled
            await asyncio.gather(*pending, return_exceptions=True)

    async def _back_off(self, delay: float) -> bool:
        """Sleep ``delay`` unless stopping, or (True) the broker reports it reconnected meanwhile."""
        counted, seen = self.broker.capabilities.counts_reconnects, self.broker.reconnects
        loop = asyncio.get_running_loop()
        end = loop.time() + delay
        while not self._stopping.is_set() and loop.time() < end:
            await self._sleep_unless_stopping(min(0.1, end - loop.time()))
            if counted and self.broker.reconnects != seen:
                return True
        return False

    async def _sleep_unless_stopping(self, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=delay)

    # -- one delivery ----------------------------------------------------------------------

    async def _handle(self, plugin: Plugin, delivery: Delivery) -> None:
        for hook in self._watch.received:
            hook(plugin)
        # Each delivery is its own task: these fields stay on this job's log lines only.
        job_fields.set({"message_id": delivery.message_id or None, "worker": self.worker_id})
        job = await self._intake(plugin, delivery)
        if job is None:
            return
        if await self._not_now(job):
            for hook in self._watch.closed:
                hook(job)
            return
        if job.attempt > self._max_tentativas(plugin):
            # Earlier attempts never settled: the job killed its worker (e.g. out of memory) or
            # lost its lease each time. Running it again would only loop; dead-letter it instead.
            await self._settle.give_up(job, WorkerLost(
                f"attempt {job.attempt} exceeds max_tentativas={self._max_tentativas(plugin)}: "
                "earlier attempts never finished (the worker died or lost the job while running it)"
            ))  # fmt: skip
            for hook in self._watch.closed:
                hook(job)
            return
        job = dataclasses.replace(job, iniciado_em=time.time(), inicio=time.perf_counter())
        self._running[job] = asyncio.get_running_loop().time()
        if self._beater is None:
            self._beater = asyncio.create_task(self._heartbeats())
        for hook in self._watch.started:
            hook(job)
        try:
            result = await self._run(job)
        except asyncio.CancelledError:
            job.log.warning("released unfinished at shutdown; it will be redelivered")
            with contextlib.suppress(BrokerError):
                await delivery.nack()
            raise
        except Exception as exc:
            for hook in self._watch.failed:
                hook(job, exc)
            if isinstance(exc, PermanentFailure):
                await self._settle.give_up(job, exc)
            else:
                await self._settle.retry_or_give_up(job, exc)
        else:
            await self._settle.succeed(job, result)
        finally:
            for hook in self._watch.finished:
                hook(job)
            self._running.pop(job, None)
            for hook in self._watch.closed:
                hook(job)

    async def _intake(self, plugin: Plugin, delivery: Delivery) -> Job | None:
        if delivery.problem is not None:  # broker fields (headers, ids, counters) unreadable
            await self._dead_letter_raw(delivery, delivery.problem, "EnvelopeError")
            return None
        try:
            env = wire.decode(delivery.body, max_bytes=self.options.max_message_bytes)
        except EnvelopeError as exc:
            await self._dead_letter_raw(delivery, exc.reason, type(exc).__name__)
            return None
        spent = gate.spent(env, delivery, self.broker)
        tentativa = max(1, delivery.attempt - spent)
        fields = {"correlation_id": env.correlation_id, "message_id": env.message_id,
                  "alvo": plugin.nome, "tentativa": tentativa}  # fmt: skip
        job_fields.set({**fields, "worker": self.worker_id})  # for the handler's own loggers too
        if env.tipo_evento != plugin.tipo_evento:
            await self._dead_letter_raw(
                delivery,
                f"tipo_evento {env.tipo_evento!r} cannot be handled on {plugin.fila} "
                f"(expects {plugin.tipo_evento!r})",
                "EnvelopeError",
            )
            return None
        if env.responder_para is not None:
            try:
                validate_results_queue(env.responder_para)
            except ConfigError as exc:  # its result could never be published: refused before any work
                await self._dead_letter_raw(delivery, str(exc), "EnvelopeError")
                return None
        bound = JobLogger(log, fields)
        attributes = tracing.messaging(self.broker.scheme, plugin.fila, env.message_id, env.correlation_id)
        attributes["orq.tentativa"] = tentativa
        span = tracing.start(f"orq.handle {plugin.nome}", "consumer", env.headers, attributes)
        return Job(plugin, delivery, env, bound, span, spent=spent)

    async def _not_now(self, job: Job) -> bool:
        """Settle a job that may not start now: expired (answered erro, dead-lettered as
        ``expired``) or early (held back until its ``executar_em``). False: run it now."""
        env, delivery = job.envelope, job.delivery
        now = time.time()
        if gate.expired(env, now):
            await self._settle.give_up(job, gate.expiry_error(env), reason=gate.EXPIRED)
            return True
        early = gate.early(env, now)
        if early > 0:
            job.log.debug("held back %.3fs until its executar_em", early)
            try:
                await delivery.defer(early)
            except BrokerError as exc:  # it comes back at its visibility timeout, still early
                job.log.warning("could not hold the job back until its executar_em: %s", exc)
            return True
        return False

    async def _dead_letter_raw(self, delivery: Delivery, reason: str, error_type: str) -> None:
        log.warning("dead-lettering malformed message on %s: %s", delivery.queue, reason)
        try:
            await delivery.dead_letter(reason, error_type=error_type)
        except BrokerError as exc:
            log.error("could not dead-letter (will be redelivered): %s", exc)
            with contextlib.suppress(BrokerError):
                await delivery.nack(self.options.backoff(delivery.attempt))

    async def _heartbeats(self) -> None:
        """One loop renews the lease of every job running longer than a beat.

        It runs on the event loop, not in the handler's thread, so a handler stuck in C code or
        a blocking call keeps its lease while the process lives. One task for all jobs instead
        of one per job: a job that ends within a beat costs no timer at all.
        """
        interval = max(0.05, self.options.visibility_timeout / 3)
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            now = loop.time()
            due = [job for job, since in self._running.items() if now - since >= interval * 0.9]
            if due:
                beats = await asyncio.gather(
                    *(job.delivery.heartbeat() for job in due), return_exceptions=True
                )
                for job, outcome in zip(due, beats, strict=True):
                    if isinstance(outcome, BrokerError):
                        job.log.warning("heartbeat failed: %s", outcome)
                    elif isinstance(outcome, Exception):
                        job.log.error("heartbeat failed unexpectedly: %r", outcome)

    async def _run(self, job: Job) -> dict[str, Any]:
        plugin = job.plugin
        payload = handler.payload_for(plugin, job.envelope.payload)
        await self._respect_rate_limit(job)
        args = (payload, self._context(job)) if plugin.takes_context else (payload,)
        timeout = plugin.timeout or self.options.timeout
        on_part = functools.partial(self._part, job)
        began = time.perf_counter()
        try:
            return await handler.invoke(plugin, args, self._pool, timeout, on_part)
        finally:
            for hook in self._watch.handled:
                hook(job, time.perf_counter() - began)

    async def _part(self, job: Job, part: dict[str, Any], parte: int) -> None:
        await self._settle.answer(job, "ok", part, None, parte=parte)

    async def _respect_rate_limit(self, job: Job) -> None:
        plugin = job.plugin
        if not plugin.rate_limit:
            return
        key = plugin.rate_key(job.envelope.payload) if plugin.rate_key else None
        slot = f"{plugin.fila}:{key or '*'}"
        wait = await self.broker.slots().reserve(slot, 1.0 / plugin.rate_limit)
        if wait > 0:
            job.log.debug("rate limit %s: waiting %.2fs", slot, wait)
            await asyncio.sleep(wait)

    def _context(self, job: Job) -> Contexto:
        loop = asyncio.get_running_loop()

        def on_progress(fraction: float, note: str | None) -> None:
            loop.call_soon_threadsafe(self._progress, job, fraction, note)

        return Contexto(
            correlation_id=job.envelope.correlation_id,
            message_id=job.envelope.message_id or "",
            tentativa=job.attempt,
            alvo=job.plugin.nome,
            log=job.log,
            cancelado=self._cancel,
            _on_progress=on_progress,
        )

    def _progress(self, job: Job, fraction: float, note: str | None) -> None:
        for hook in self._watch.progress:
            hook(job, fraction, note)
