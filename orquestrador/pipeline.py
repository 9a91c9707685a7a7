"""Pipelines: when a job finishes ok, launch the next jobs of the chain.

A rule says "each ok result of escavador X becomes jobs for Y", through an optional function
from the result to one payload, many (fan-out), or none. Jobs launched under a pipeline answer
to the queue ``pipeline_<nome>``; a :class:`PipelineRunner` — inside a notebook's orchestrator,
or as ``orq worker pipeline NAME`` so the rules outlive the notebook — reads those results,
publishes the children durably (same correlation_id, causation_id = the result's message_id),
and then forwards the result to the orchestrator's own results queue with the list of children
in ``filhos``. The store thus learns a job's expected children in the same transaction as its
result, so "is this crawl finished?" is a question with an exact answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from orquestrador import envelope as wire
from orquestrador import tracing
from orquestrador.brokers.base import Broker, Delivery, validate_queue_name
from orquestrador.envelope import Envelope
from orquestrador.errors import BrokerError, EnvelopeError, PluginError
from orquestrador.plugins import queue_for
from orquestrador.vocabulary import KIND_OF, KINDS, PEDIDO_DE, is_request

log = logging.getLogger("orquestrador.pipeline")

Transform = Callable[[dict[str, Any]], dict[str, Any] | list[dict[str, Any]] | None]


def _target(spec: str) -> tuple[str, str]:
    kind, _, nome = spec.partition(":")
    if kind not in KINDS or not nome:
        raise PluginError(f"pipeline step {spec!r}: write 'escavador:NAME' or 'executor:NAME'")
    validate_queue_name(queue_for(kind, nome))
    return kind, nome


@dataclass(frozen=True)
class Regra:
    origem: tuple[str, str]
    destino: tuple[str, str]
    transformar: Transform | None = None

    def filhos(self, resultado: dict[str, Any]) -> list[dict[str, Any]]:
        out = resultado if self.transformar is None else self.transformar(resultado)
        if out is None:
            return []
        payloads = [out] if isinstance(out, dict) else list(out)
        for payload in payloads:
            if not isinstance(payload, dict):
                raise TypeError(f"a pipeline rule must give dicts, got {type(payload).__name__}")
        return payloads


@dataclass
class Pipeline:
    """A named set of rules. Declare it in a module so workers can run it by name."""

    nome: str
    regras: list[Regra] = field(default_factory=list)

    def __post_init__(self) -> None:
        validate_queue_name(self.fila)
        with _LOCK:
            _PIPELINES[self.nome] = self

    @property
    def fila(self) -> str:
        return f"pipeline_{self.nome}"

    def regra(self, origem: str, destino: str, transformar: Transform | None = None) -> Pipeline:
        """``origem``/``destino`` are 'escavador:NAME' or 'executor:NAME'; returns self to chain."""
        self.regras.append(Regra(_target(origem), _target(destino), transformar))
        return self

    def regras_de(self, kind: str, alvo: str | None) -> list[Regra]:
        return [r for r in self.regras if r.origem == (kind, alvo)]


_PIPELINES: dict[str, Pipeline] = {}
_LOCK = threading.Lock()


def get_pipeline(nome: str) -> Pipeline:
    pipeline = _PIPELINES.get(nome)
    if pipeline is None:
        known = ", ".join(sorted(_PIPELINES)) or "none"
        raise PluginError(f"no pipeline named {nome!r} (declared: {known}); import its module (--module M)")
    return pipeline


class PipelineRunner:
    """Consumes ``pipeline_<nome>``; safe to run in several processes at once."""

    def __init__(self, broker: Broker, pipeline: Pipeline, *, default_results: str | None = None) -> None:
        self.broker = broker
        self.pipeline = pipeline
        self.default_results = default_results or wire.DEFAULT_RESULTS_QUEUE
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        consumer = await self.broker.consume(self.pipeline.fila, visibility_timeout=60.0, prefetch=64)
        log.info("serving %s (%d rules)", self.pipeline.fila, len(self.pipeline.regras))
        try:
            while not self._stopping.is_set():
                try:
                    batch = await consumer.fetch(64, timeout=0.5)
                except BrokerError as exc:
                    log.warning("fetch from %s failed (%s); retrying", self.pipeline.fila, exc)
                    await asyncio.sleep(1.0)
                    continue
                for delivery in batch:
                    await self._handle(delivery)
        finally:
            await consumer.close()

    async def _handle(self, delivery: Delivery) -> None:
        try:
            result = wire.decode(delivery.body)
            if result.is_request:
                raise EnvelopeError(f"{result.tipo_evento} sent to a pipeline queue")
        except EnvelopeError as exc:
            await delivery.dead_letter(exc.reason, error_type=type(exc).__name__)
            return
        final = str(result.extras.get("responder_final") or self.default_results)
        try:
            children = self._children(result, final)
        except Exception as exc:  # a user's transform failing must not stop the pipeline
            reason = f"pipeline {self.pipeline.nome}: rule failed: {type(exc).__name__}: {exc}"
            log.error("%s (correlation_id %s)", reason, result.correlation_id)
            await self._forward(result.with_changes(pipeline_erro=reason), final)
            await delivery.dead_letter(reason, error_type=type(exc).__name__)
            return
        try:
            for fila, child, span in children:
                with span:
                    await self.broker.publish(fila, wire.encode(child), message_id=child.message_id)
            filhos = [_summary(child) for _, child, _ in children]
            await self._forward(result.with_changes(filhos=filhos) if filhos else result, final)
            await delivery.ack()
        except BrokerError as exc:  # children carry stable ids: a retry does not double them
            log.warning("pipeline step not completed (%s); will retry", exc)
            with contextlib.suppress(BrokerError):
                await delivery.nack(1.0)

    def _children(self, result: Envelope, final: str) -> list[tuple[str, Envelope, tracing.Span]]:
        kind = None if is_request(result.tipo_evento) else KIND_OF.get(result.tipo_evento)
        if result.status == "erro" or kind is None or result.extras.get("parcial"):
            return []
        out: list[tuple[str, Envelope, tracing.Span]] = []
        for regra in self.pipeline.regras_de(kind, result.alvo):
            dest_kind, dest_alvo = regra.destino
            follows = bool(self.pipeline.regras_de(dest_kind, dest_alvo))
            fila = queue_for(dest_kind, dest_alvo)
            for payload in regra.filhos(result.payload):
                message_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"orq:{result.message_id}/{len(out)}"))
                # A child continues the result's trace: its span is a child of the result's.
                attributes = tracing.messaging(self.broker.scheme, fila, message_id, result.correlation_id)
                span = tracing.start(f"orq.publish {fila}", "producer", result.headers, attributes)
                child = Envelope(
                    correlation_id=result.correlation_id,
                    tipo_evento=PEDIDO_DE[dest_kind],
                    payload=payload,
                    timestamp=wire.now(),
                    message_id=message_id,
                    causation_id=result.message_id,
                    alvo=dest_alvo,
                    responder_para=self.pipeline.fila if follows else final,
                    headers=span.headers,
                    extras={"responder_final": final},
                )
                out.append((fila, child, span))
        return out

    async def _forward(self, result: Envelope, final: str) -> None:
        await self.broker.publish(final, wire.encode(result), message_id=result.message_id)


def _summary(child: Envelope) -> dict[str, Any]:
    return {
        "message_id": child.message_id,
        "tipo_evento": child.tipo_evento,
        "alvo": child.alvo,
        "payload": child.payload,
        "timestamp": child.timestamp.isoformat(),
    }
