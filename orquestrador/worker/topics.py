"""The toolkit's own happenings on topics, published by workers for anyone to subscribe to.

- ``orq.<tipo_evento>.<alvo>`` — every final result as the worker answers it
  (``orq.resultado_coleta.http``, ``orq.resultado_execucao.salvar``); ``dados`` holds the
  result envelope's fields (``status``, ``payload``, ``erro``, ``causation_id`` = the job's
  ``message_id``, ``tentativa``, ``worker``, …), the message its ``correlation_id`` and its
  ``traceparent`` header. Partial results are not published.
- ``orq.eventos.<alvo>.<evento>`` — the lifecycle events (``iniciado``, ``progresso``,
  ``retry``, ``dead_letter``): ``dados`` is the event as on ``orq.eventos``.

Why off the job's path: the result envelope is the durable answer and is published before the
ack; these are copies for watchers, gathered by the events observer and published with its
batch every ``eventos.FLUSH_SECONDS``, concurrently, never awaited by a job. Like lifecycle
events they are best effort: a broker error drops them (logged at debug). ``ORQ_TOPICS=off``
in a worker's environment turns them off (``results`` keeps only the result topics).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from orquestrador.errors import OrquestradorError
from orquestrador.topics.message import TopicMessage

if TYPE_CHECKING:
    from orquestrador.brokers.base import Broker
    from orquestrador.eventos import EventoJob

log = logging.getLogger("orquestrador.worker")

ENV_TOPICS = "ORQ_TOPICS"
PUBLISH_TIMEOUT = 5.0
# The result envelope's fields a watcher needs; the routing ones (responder_para…) stay out.
_RESULT_FIELDS = (
    "tipo_evento", "alvo", "status", "payload", "erro", "message_id", "causation_id", "tentativa",
    "worker", "iniciado_em", "duracao", "timestamp",
)  # fmt: skip


def enabled() -> tuple[bool, bool]:
    """(results, events) topics on, from ``ORQ_TOPICS``: on (default), results, or off."""
    value = os.environ.get(ENV_TOPICS, "on").strip().lower()
    if value in ("off", "0", "false", "no"):
        return False, False
    return True, value not in ("results", "resultados")


def result_topic(tipo_evento: str, alvo: str) -> str:
    return f"orq.{tipo_evento}.{alvo}"


def event_topic(alvo: str, evento: str) -> str:
    return f"orq.eventos.{alvo}.{evento}"


def result_message(body: bytes) -> TopicMessage | None:
    """The topic message of a result envelope the worker just published (None for a part)."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("parcial"):
        return None
    headers = data.get("headers")
    traceparent = headers.get("traceparent") if isinstance(headers, dict) else None
    return TopicMessage(
        result_topic(str(data.get("tipo_evento")), str(data.get("alvo"))),
        {k: data[k] for k in _RESULT_FIELDS if k in data},
        headers={"traceparent": traceparent} if isinstance(traceparent, str) else {},
        correlation_id=data.get("correlation_id"),
    )


def event_message(event: EventoJob) -> TopicMessage:
    return TopicMessage(
        event_topic(event.alvo, event.evento), event.as_dict(), correlation_id=event.correlation_id
    )


async def publish(broker: Broker, messages: Sequence[TopicMessage]) -> None:
    """Publish ``messages`` concurrently; what fails is dropped and logged (best effort)."""
    bodies: list[tuple[str, bytes]] = []
    for message in messages:
        try:
            bodies.append((message.topico, message.encode()))
        except OrquestradorError as exc:  # e.g. a result too big to copy: the envelope carried it
            log.debug("topic %s not published: %s", message.topico, exc)
    if not bodies:
        return
    try:
        outcomes: list[Any] = await asyncio.wait_for(
            asyncio.gather(*(broker.publish_topic(t, b) for t, b in bodies), return_exceptions=True),
            PUBLISH_TIMEOUT,
        )
    except TimeoutError:
        log.debug("%d topic messages not confirmed within %.0fs", len(bodies), PUBLISH_TIMEOUT)
        return
    failed = [o for o in outcomes if isinstance(o, BaseException)]
    if failed:
        log.debug("%d of %d topic messages dropped: %s", len(failed), len(bodies), failed[0])


__all__ = [
    "ENV_TOPICS", "enabled", "event_message", "event_topic", "publish", "result_message", "result_topic",
]  # fmt: skip
