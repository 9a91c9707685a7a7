"""orquestrador: launch scraping and execution jobs from notebooks, run them on real brokers.

    from orquestrador import Orquestrador
    orq = Orquestrador()                      # embedded NATS, or ORQ_BROKER_URL
    job = orq.iniciar_coleta("http", {"url": "https://example.org"})
    job.wait(30).result

Importing this package loads neither pandas nor ipywidgets, so worker processes stay small.
"""

from typing import TYPE_CHECKING, Any

from orquestrador.errors import (
    BrokerError,
    BrokerUnavailable,
    ClosedError,
    ConfigError,
    EnvelopeError,
    JobFailed,
    JobTimeout,
    LaunchError,
    OrquestradorError,
    PayloadTooLarge,
    PermanentFailure,
    PluginError,
    Retry,
    ScheduleError,
    StoreError,
    TopicError,
)
from orquestrador.plugins import Plugin, escavador, executor, registry

if TYPE_CHECKING:
    from orquestrador.envelope import Envelope, Erro, decode, encode
    from orquestrador.facade import Assinatura, Job, Lote, Orquestrador
    from orquestrador.orchestrator import AsyncOrquestrador
    from orquestrador.pipeline import Pipeline
    from orquestrador.store.retention import Retencao
    from orquestrador.topics import TopicMessage
    from orquestrador.topics.subscription import AsyncAssinatura
    from orquestrador.worker import Contexto, Worker, WorkerOptions

# Loaded on first use: a worker process that only registers plugins never imports the
# orchestrator, the store (sqlite3) or the notebook facade.
_LAZY = {
    "Assinatura": "orquestrador.facade",
    "AsyncAssinatura": "orquestrador.topics.subscription",
    "TopicMessage": "orquestrador.topics",
    "Contexto": "orquestrador.worker",
    "Envelope": "orquestrador.envelope",
    "Erro": "orquestrador.envelope",
    "decode": "orquestrador.envelope",
    "encode": "orquestrador.envelope",
    "Job": "orquestrador.facade",
    "Lote": "orquestrador.facade",
    "Orquestrador": "orquestrador.facade",
    "AsyncOrquestrador": "orquestrador.orchestrator",
    "Pipeline": "orquestrador.pipeline",
    "Retencao": "orquestrador.store.retention",
    "Worker": "orquestrador.worker",
    "WorkerOptions": "orquestrador.worker",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'orquestrador' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__version__ = "0.1.0"

__all__ = [
    "Assinatura",
    "AsyncAssinatura",
    "AsyncOrquestrador",
    "BrokerError",
    "BrokerUnavailable",
    "ClosedError",
    "ConfigError",
    "Contexto",
    "Envelope",
    "EnvelopeError",
    "Erro",
    "Job",
    "JobFailed",
    "JobTimeout",
    "LaunchError",
    "Lote",
    "Orquestrador",
    "OrquestradorError",
    "PayloadTooLarge",
    "PermanentFailure",
    "Pipeline",
    "Plugin",
    "PluginError",
    "Retencao",
    "Retry",
    "ScheduleError",
    "StoreError",
    "TopicError",
    "TopicMessage",
    "Worker",
    "WorkerOptions",
    "decode",
    "encode",
    "escavador",
    "executor",
    "registry",
]
