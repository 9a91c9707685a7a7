"""The worker: serve plugins' queues from one broker connection, one process or a supervised pool.

- :mod:`~orquestrador.worker.runtime` — fetch, run, answer and settle every delivery once;
- :mod:`~orquestrador.worker.settling` — answer, ack, retry or dead-letter a finished job;
- :mod:`~orquestrador.worker.options` — ``WorkerOptions``;
- :mod:`~orquestrador.worker.handler` — calling a plugin's handler (sync, async, generators);
- :mod:`~orquestrador.worker.observers` — metrics, lifecycle events and tracing, as one list of
  observers the runtime tells what happens to each job;
- :mod:`~orquestrador.worker.batching` — results and acks of jobs finishing together, in one trip;
- :mod:`~orquestrador.worker.context` — what a handler gets besides its payload;
- :mod:`~orquestrador.worker.metrics` — Prometheus; :mod:`~orquestrador.worker.supervisor` — ``--processes``.
"""

from orquestrador.worker.context import Contexto
from orquestrador.worker.options import WorkerOptions
from orquestrador.worker.runtime import Worker

__all__ = ["Contexto", "Worker", "WorkerOptions"]
