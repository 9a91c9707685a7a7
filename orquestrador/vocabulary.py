"""The words of the toolkit, each defined once: plugin kinds, envelope types and job states.

Why one module: the kind↔tipo_evento mapping and the list of job states used to be copied into
the plugins, the orchestrator, pipelines, AsyncAPI, the store, the widgets and the CLI; a new
kind or state had to be found in each. Everything else imports these names. Nothing of the
toolkit is imported here, so any module may use it.

- A **kind** (``escavador``, ``executor``) is what a plugin is; its jobs are ``iniciar_*`` envelopes
  and its answers ``resultado_*`` envelopes (:data:`PEDIDO_DE`, :data:`RESULTADO_DE`, :data:`KIND_OF`).
- A job's **estado** moves forward only: ``queued`` → ``running`` → one of :data:`FINAIS`;
  ``unknown`` is a job the store has no record of (never launched here, or pruned).
"""

from __future__ import annotations

from typing import Literal

Kind = Literal["escavador", "executor"]
KINDS: tuple[Kind, ...] = ("escavador", "executor")

TipoEvento = Literal["iniciar_coleta", "resultado_coleta", "iniciar_execucao", "resultado_execucao"]
TIPOS_EVENTO: tuple[str, ...] = TipoEvento.__args__  # type: ignore[attr-defined]

# The request envelope of each kind, and the answer to each request.
PEDIDO_DE: dict[str, TipoEvento] = {"escavador": "iniciar_coleta", "executor": "iniciar_execucao"}
RESULTADO_DE: dict[str, TipoEvento] = {
    "iniciar_coleta": "resultado_coleta",
    "iniciar_execucao": "resultado_execucao",
}
# The kind a request or a result belongs to.
KIND_OF: dict[str, Kind] = {
    tipo: kind for kind in KINDS for tipo in (PEDIDO_DE[kind], RESULTADO_DE[PEDIDO_DE[kind]])
}

Estado = Literal["unknown", "queued", "running", "ok", "erro", "dead-lettered"]
ESTADOS: tuple[str, ...] = Estado.__args__  # type: ignore[attr-defined]  # in the order a job moves
PENDENTES: tuple[str, ...] = ("queued", "running")  # launched, not finished
FINAIS: tuple[str, ...] = ("ok", "erro", "dead-lettered")  # a job in one of these never changes again
FALHAS: tuple[str, ...] = ("erro", "dead-lettered")  # finished without a result


def is_request(tipo_evento: str) -> bool:
    """Whether ``tipo_evento`` asks for work (``iniciar_*``) rather than answers it."""
    return tipo_evento in RESULTADO_DE


__all__ = [
    "ESTADOS",
    "FALHAS",
    "FINAIS",
    "KINDS",
    "KIND_OF",
    "PEDIDO_DE",
    "PENDENTES",
    "RESULTADO_DE",
    "TIPOS_EVENTO",
    "Estado",
    "Kind",
    "TipoEvento",
    "is_request",
]
