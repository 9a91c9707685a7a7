"""React to results as they arrive: the workers publish every result and lifecycle event on
topics, so another service (or a notebook) follows them without polling the store.

``python examples/results_on_topics.py`` (from a shell: ``orq subscribe 'orq.resultado_coleta.*'``)

- ``orq.<tipo_evento>.<alvo>``: each final result (``dados`` is the ``resultado_*`` envelope);
- ``orq.eventos.<alvo>.<evento>``: iniciado, progresso, retry, dead_letter.
"""

from __future__ import annotations

from typing import Any

from _worker import running

from orquestrador import Orquestrador, escavador


@escavador("clima")
def clima(payload: dict[str, Any]) -> dict[str, Any]:
    return {"cidade": payload["cidade"], "temperatura": len(payload["cidade"]) * 3}


def main() -> list[str]:
    cidades = ["Recife", "Manaus", "Curitiba"]
    vistos: list[str] = []
    with Orquestrador() as orq, running("escavador:clima"):
        with (
            orq.assinar("orq.resultado_coleta.*") as resultados,
            orq.assinar("orq.eventos.clima.*") as eventos,
        ):
            for cidade in cidades:
                orq.iniciar_coleta("clima", {"cidade": cidade})
            for msg in resultados:  # blocks until the next one (the iterator form)
                resultado = msg.dados  # the resultado_coleta envelope, as the worker published it
                if resultado["alvo"] != "clima":  # '*': every escavador's results on this broker
                    continue
                print(f"{msg.topico}: {resultado['status']} {resultado['payload']} [{msg.correlation_id}]")
                vistos.append(resultado["payload"]["cidade"])
                if len(vistos) == len(cidades):
                    break
            iniciados = [eventos.receber(timeout=10) for _ in cidades]
        print("started:", [m.topico for m in iniciados if m is not None])
    assert sorted(vistos) == sorted(cidades)
    return vistos


if __name__ == "__main__":
    main()
