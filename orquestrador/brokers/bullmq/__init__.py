"""BullMQ adapter: real BullMQ jobs on Redis, through the ``bullmq`` package (its Lua scripts).

Mapping: each queue is the BullMQ queue of the same name (keys ``bull:<queue>:…``, or
``?prefix=``), so Node's ``Queue``/``Worker``/``QueueEvents`` and Bull Board see the same jobs.
A message is a job: id = ``message_id`` (BullMQ keeps one job per id, which dedups a second
publish while the first is kept: completed jobs stay 120 s), data = the envelope (JSON bodies
verbatim; other bytes wrapped, see :mod:`.jobs`), name = its ``tipo_evento``, headers in its
options. A fetch is ``moveToActive``: BullMQ's lock is the lease (renewed by ``extendLock``),
its attempts-started count the delivery count, lapsed locks come back through BullMQ's stalled
check. ``ack`` completes the job with the worker's ``resultado_*`` envelope as its
``returnvalue`` (Node's ``waitUntilFinished`` resolves with it); the result also goes to the
envelope's ``responder_para`` queue, a BullMQ queue like any other, for the orchestrator.
``nack`` is BullMQ's retry (``retryJob``, or ``moveToDelayed`` into the delayed set); a dead
letter is a failed job, its reason BullMQ's ``failedReason``. ``<queue>.dlq`` names the failed
set: stats and peek read it, replay is BullMQ's retry of failed jobs. Standalone Redis only.

Files: :mod:`.broker` (connection, publishing, inspection, replay), :mod:`.consumer` (fetching
and deliveries), :mod:`.errors` (the one mapping of errors), :mod:`.jobs` (how a message is a job).
"""

try:
    import bullmq as _bullmq  # noqa: F401 - the optional dependency, checked once with its install hint
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the environment
    from orquestrador.errors import ConfigError

    raise ConfigError(
        'the bullmq:// broker needs the bullmq package: pip install "orquestrador[bullmq]"'
    ) from exc

from orquestrador.brokers.bullmq.broker import BullMQBroker
from orquestrador.brokers.bullmq.consumer import BullMQConsumer, BullMQDelivery

__all__ = ["BullMQBroker", "BullMQConsumer", "BullMQDelivery"]
