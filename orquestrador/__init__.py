"""orquestrador: launch scraping and execution jobs from notebooks, run them on real brokers.

    from orquestrador import Orquestrador
    orq = Orquestrador()                      # embedded NATS, or ORQ_BROKER_URL
    job = orq.iniciar_coleta("http", {"url": "https://example.org"})
    job.wait(30).result

Importing this package loads neither pandas nor ipywidgets, so worker processes stay small.
"""

from orquestrador.context import Contexto
from orquestrador.envelope import Envelope, Erro, decode, encode
from orquestrador.errors import (
    BrokerError,
    BrokerUnavailable,
    ConfigError,
    EnvelopeError,
    JobTimeout,
    OrquestradorError,
    PayloadTooLarge,
    PermanentFailure,
    PluginError,
    Retry,
)
from orquestrador.facade import Job, Lote, Orquestrador
from orquestrador.orchestrator import AsyncOrquestrador
from orquestrador.pipeline import Pipeline
from orquestrador.plugins import Plugin, escavador, executor, registry
from orquestrador.worker import Worker, WorkerOptions

__version__ = "0.1.0"

__all__ = [
    "AsyncOrquestrador",
    "BrokerError",
    "BrokerUnavailable",
    "ConfigError",
    "Contexto",
    "Envelope",
    "EnvelopeError",
    "Erro",
    "Job",
    "JobTimeout",
    "Lote",
    "Orquestrador",
    "OrquestradorError",
    "PayloadTooLarge",
    "PermanentFailure",
    "Pipeline",
    "Plugin",
    "PluginError",
    "Retry",
    "Worker",
    "WorkerOptions",
    "decode",
    "encode",
    "escavador",
    "executor",
    "registry",
]
