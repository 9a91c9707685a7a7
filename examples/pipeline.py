"""A pipeline: each ok result of one step launches the next jobs of the chain, here a fan-out.

``python examples/pipeline.py``

``listar`` finds three pages; the rule turns its result into one ``contar`` coleta per page, and
each count into one ``somar`` execucao. Every job shares the first one's correlation_id, so
``esperar_cadeia`` knows when the whole chain (children included) is done.
"""

from __future__ import annotations

from typing import Any

from _worker import running

from orquestrador import Orquestrador, Pipeline, escavador, executor

TEXTOS = {"a": "um dois três", "b": "quatro cinco", "c": "seis"}


@escavador("listar")
def listar(payload: dict[str, Any]) -> dict[str, Any]:
    return {"paginas": sorted(TEXTOS)}


@escavador("contar")
def contar(payload: dict[str, Any]) -> dict[str, Any]:
    return {"pagina": payload["pagina"], "palavras": len(TEXTOS[payload["pagina"]].split())}


@executor("somar")
def somar(payload: dict[str, Any]) -> dict[str, Any]:
    return {"registrado": f"{payload['pagina']}={payload['palavras']}"}


fluxo = (
    Pipeline("contagem")
    .regra("escavador:listar", "escavador:contar", lambda r: [{"pagina": p} for p in r["paginas"]])
    .regra("escavador:contar", "executor:somar")  # the result itself is the next payload
)


def main() -> dict[str, int]:
    workers = ("escavador:listar", "escavador:contar", "executor:somar")
    with Orquestrador() as orq, running(*workers):
        orq.pipeline(fluxo)  # the rules run in this process (or: orq worker pipeline contagem)
        inicio = orq.iniciar_coleta("listar", {}, pipeline=fluxo)
        estados = orq.esperar_cadeia(inicio.correlation_id, timeout=60)
        print(estados)
        print(orq.rastrear(inicio.correlation_id)[["tipo", "evento", "alvo", "status"]].to_string())
        assert estados == {"ok": 7}  # listar, 3 × contar, 3 × somar
        return estados


if __name__ == "__main__":
    main()
