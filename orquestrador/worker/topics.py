"""The toolkit's own happenings on topics, published by workers for anyone to subscribe to.

- ``orq.<tipo_evento>.<alvo>`` — every final result as the worker answers it
  (``orq.resultado_coleta.http``, ``orq.resultado_execucao.salvar``); ``dados`` is the
  ``resultado_*`` envelope itself (``status``, ``payload``, ``erro``, ``causation_id`` = the
  job's ``message_id``, ``tentativa``, ``worker``, …; wire format v1), the message carries its
  ``correlation_id``. Partial results are not published.
- ``orq.eventos.<alvo>.<evento>`` — the lifecycle events (``iniciado``, ``progresso``,
  ``retry``, ``dead_letter``): ``dados`` is the event as on ``orq.eventos``.

Why off the job's path: the result envelope is the durable answer and is published before the
ack; these are copies for watchers, gathered by the events observer and published with its
batch every ``eventos.FLUSH_SECONDS``, concurrently, never awaited by a job. Like lifecycle
events they are best effort: a broker error drops them (logged at debug). ``ORQ_TOPICS=off``
in a worker's environment turns them off, ``results`` keeps only the result topics
(:func:`orquestrador.settings.toolkit_topics`).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from typing import TYPE_CHECKING

from orquestrador.envelope import DEFAULT_MAX_BYTES, iso, new_id
from orquestrador.errors import TopicError
from orquestrador.topics.patterns import validate_topic
from orquestrador.vocabulary import RESULTADO_DE

if TYPE_CHECKING:
    from orquestrador.brokers.base import Broker
    from orquestrador.eventos import EventoJob
    from orquestrador.worker.settling import Job

log = logging.getLogger("orquestrador.worker")

_string = json.encoder.encode_basestring_ascii  # a str as JSON (C), without json.dumps's overhead
PUBLISH_TIMEOUT = 5.0
# A result bigger than this is not copied: its topic message would pass the subscribers' limit.
MAX_RESULT_BYTES = DEFAULT_MAX_BYTES - 4096


def result_topic(tipo_evento: str, alvo: str) -> str:
    return f"orq.{tipo_evento}.{alvo}"


def event_topic(alvo: str, evento: str) -> str:
    return f"orq.eventos.{alvo}.{evento}"


@functools.lru_cache(maxsize=1024)
def _checked(topic: str) -> bytes | None:
    """The topic as a JSON string, once per topic; None when it is no valid topic."""
    try:
        return json.dumps(validate_topic(topic)).encode()
    except TopicError:
        log.debug("no topic for %r", topic)
        return None


def body(topic: str, dados: bytes, correlation_id: str, timestamp: bytes) -> bytes | None:
    """A topic message (:mod:`orquestrador.topics.message`'s format) around ``dados``, JSON
    already encoded: the result envelope is copied as it is, never parsed again."""
    name = _checked(topic)
    if name is None:
        return None
    return b"".join((
        b'{"topico":', name, b',"dados":', dados, b',"headers":{},"message_id":"', new_id().encode(),
        b'","timestamp":', timestamp, b',"correlation_id":', _string(correlation_id).encode(),
        b',"versao":1}',
    ))  # fmt: skip


def now() -> bytes:
    """The timestamp of the messages of one batch, as JSON."""
    return _string(iso(time.time())).encode()


def result_body(job: Job, reply: bytes, timestamp: bytes) -> tuple[str, bytes] | None:
    """``orq.resultado_*.<alvo>`` carrying the result envelope the worker just published."""
    if len(reply) > MAX_RESULT_BYTES:
        return None
    env = job.envelope
    topic = result_topic(RESULTADO_DE.get(env.tipo_evento, "resultado"), job.plugin.nome)
    made = body(topic, reply, env.correlation_id, timestamp)
    return None if made is None else (topic, made)


def event_body(event: EventoJob, encoded: bytes, timestamp: bytes) -> tuple[str, bytes] | None:
    """``orq.eventos.<alvo>.<evento>`` carrying the event (``encoded``: as on ``orq.eventos``)."""
    topic = event_topic(event.alvo, event.evento)
    made = body(topic, encoded, event.correlation_id, timestamp)
    return None if made is None else (topic, made)


async def publish(broker: Broker, items: list[tuple[str, bytes]]) -> None:
    """Publish a batch of ``(topic, body)``; what fails is dropped and logged (best effort)."""
    if not items:
        return
    try:
        await asyncio.wait_for(broker.publish_topics(items), PUBLISH_TIMEOUT)
    except TimeoutError:
        log.debug("%d topic messages not confirmed within %.0fs", len(items), PUBLISH_TIMEOUT)


__all__ = ["body", "event_body", "event_topic", "now", "publish", "result_body", "result_topic"]
