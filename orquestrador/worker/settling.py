"""Settling a job once its handler is done: answer, then ack, retry with backoff, or dead-letter.

Each step publishes before it acks (a crash in between repeats, never loses) and tells the
observers what happened; a broker error while settling leaves the message to its redelivery.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from orquestrador import envelope as wire
from orquestrador import tracing
from orquestrador.brokers.base import Delivery
from orquestrador.envelope import Envelope, Erro
from orquestrador.errors import BrokerError, PayloadTooLarge, PermanentFailure, Retry
from orquestrador.plugins import Plugin
from orquestrador.worker import batching
from orquestrador.worker.context import JobLogger
from orquestrador.worker.handler import erro_of
from orquestrador.worker.observers import Observers
from orquestrador.worker.options import WorkerOptions


@dataclass(frozen=True, eq=False)  # hashed by identity: a key of the heartbeat loop's table
class Job:
    """One delivery being handled: what the settling steps and the observers need of it."""

    plugin: Plugin
    delivery: Delivery
    envelope: Envelope
    log: JobLogger
    span: tracing.Span
    iniciado_em: float | None = None  # wall clock when this attempt started (epoch seconds)
    inicio: float = 0.0  # perf_counter at the same moment: the run's duration is measured from it
    spent: int = 0  # deliveries spent waiting for executar_em, not running (see worker.gate)

    @property
    def attempt(self) -> int:
        """Which run of the job this is: the broker's delivery count less the waits."""
        return max(1, self.delivery.attempt - self.spent)


class Settler:
    """The settling steps of one worker (its options, id, batched publisher and acker)."""

    def __init__(
        self,
        options: WorkerOptions,
        worker_id: str,
        scheme: str,
        publisher: batching.Publisher,
        acker: batching.Acker,
        watch: Observers,
        max_tentativas: Callable[[Plugin], int],
    ) -> None:
        self.options, self.worker_id, self._scheme = options, worker_id, scheme
        self._publisher, self._acker, self._watch = publisher, acker, watch
        self._max_tentativas = max_tentativas

    async def succeed(self, job: Job, result: dict[str, Any]) -> None:
        try:
            await self.answer(job, "ok", result, None)
        except PayloadTooLarge as exc:
            await self.give_up(job, PermanentFailure(f"result refused: {exc}"))
            return
        except BrokerError as exc:
            job.log.warning("result not published (%s); job will be retried", exc)
            await self.nack(job, self.options.backoff(job.attempt))
            return
        except Exception as exc:  # e.g. a name the broker refuses: retrying cannot help
            await self.give_up(job, PermanentFailure(f"result cannot be published: {exc}"))
            return
        try:
            await self._acker.ack(job.delivery)
        except BrokerError as exc:  # the result is out; a redelivery only repeats it
            job.log.warning("ack failed after the result was published: %s", exc)
        for hook in self._watch.succeeded:
            hook(job)
        # No "concluido" event: the durable result already says so, one message less per job.

    async def retry_or_give_up(self, job: Job, exc: Exception) -> None:
        attempt = job.attempt
        if attempt >= self._max_tentativas(job.plugin):
            await self.give_up(job, exc)
            return
        delay = exc.delay if isinstance(exc, Retry) and exc.delay is not None else None
        delay = self.options.backoff(attempt) if delay is None else delay
        job.log.info("attempt %d failed (%s: %s); retry in %.2fs", attempt,
                     type(exc).__name__, exc, delay)  # fmt: skip
        erro = erro_of(exc)
        for hook in self._watch.retried:
            hook(job, erro, delay)
        await self.nack(job, delay)

    async def give_up(self, job: Job, exc: BaseException, *, reason: str | None = None) -> None:
        """Answer erro and dead-letter; ``reason`` for the dead letter, else the error's text."""
        erro = erro_of(exc, fila_dlq=job.delivery.queue + ".dlq")
        job.log.error("dead-lettered after %d attempt(s): %s: %s", job.attempt,
                      erro.tipo, erro.mensagem)  # fmt: skip
        try:
            try:
                await self.answer(job, "erro", {}, erro)
            except (BrokerError, PayloadTooLarge):
                raise
            except Exception as err:  # cannot be answered at all: the dead letter still says why
                job.log.error("the erro result cannot be published (%s); dead-lettering without it", err)
            await job.delivery.dead_letter(reason or f"{erro.tipo}: {erro.mensagem}", error_type=erro.tipo)
        except BrokerError as err:
            job.log.error("could not dead-letter (will be redelivered): %s", err)
            await self.nack(job, self.options.backoff(job.attempt))
            return
        for hook in self._watch.dead_lettered:
            hook(job, erro)

    async def nack(self, job: Job, delay: float) -> None:
        try:
            await job.delivery.nack(delay)
        except BrokerError as exc:  # the lease will expire and the broker redelivers
            job.log.warning("nack failed: %s", exc)

    async def answer(
        self,
        job: Job,
        status: Literal["ok", "erro"],
        payload: dict[str, Any],
        erro: Erro | None,
        *,
        parte: int = 0,
    ) -> None:
        env = job.envelope
        extras: dict[str, Any] = {"worker": self.worker_id}
        if job.iniciado_em is not None and not parte:
            # The start and run time travel with the result: the best-effort "iniciado" event
            # may be lost or arrive after it, the result never is.
            extras["iniciado_em"] = wire.iso(job.iniciado_em)
            extras["duracao"] = round(time.perf_counter() - job.inicio, 6)
        if "responder_final" in env.extras:  # a pipeline step: where its runner forwards results
            extras["responder_final"] = env.extras["responder_final"]
        if isinstance(env.extras.get("agenda"), str):  # fired by a schedule: its history finds it
            extras["agenda"] = env.extras["agenda"]
        message_id = wire.new_id()
        if parte:
            # A retried job re-sends its parts with the same ids, so the store keeps each once.
            extras |= {"parcial": True, "parte": parte}
            message_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"orq:{env.message_id}/{parte}"))
        queue = env.responder_para or self.options.results_queue
        attributes = tracing.messaging(self._scheme, queue, message_id, env.correlation_id)
        attributes |= {"orq.tentativa": job.attempt, "orq.status": status}
        with job.span.child("orq.result", "producer", attributes) as span:
            resultado = Envelope(
                correlation_id=env.correlation_id,
                tipo_evento=wire.RESULTADO_DE[env.tipo_evento],
                payload=payload,
                timestamp=wire.now(),
                message_id=message_id,
                causation_id=env.message_id,
                alvo=job.plugin.nome,
                tentativa=job.attempt,
                headers=span.headers,  # the same trace, this result's own span id
                status=status,
                erro=erro,
                extras=extras,
            )
            body = wire.encode(resultado, max_bytes=self.options.max_message_bytes)
            await self._publisher.publish(queue, body, resultado.message_id)
            if not parte:
                job.delivery.reply = body  # kept with the ack where the broker keeps return values
