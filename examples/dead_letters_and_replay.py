"""Dead letters and replay: a job that keeps failing is set aside with its error, not lost;
once the cause is fixed, replaying puts it back on its queue.

``python examples/dead_letters_and_replay.py`` (from a shell: ``orq dlq list escavador_estoque``,
``orq dlq replay escavador_estoque``)
"""

from __future__ import annotations

import time
from typing import Any

from _worker import running

from orquestrador import Orquestrador, TopicMessage, escavador
from orquestrador.brokers.base import DLQ_REASON

FORNECEDOR = {"no_ar": False}  # stands for a supplier's API that is down for a while


@escavador("estoque", max_tentativas=2)
def estoque(payload: dict[str, Any]) -> dict[str, Any]:
    if not FORNECEDOR["no_ar"]:
        raise ConnectionError("supplier API unreachable")
    return {"sku": payload["sku"], "disponivel": 12}


def main() -> list[str]:
    respostas: list[TopicMessage] = []
    with Orquestrador() as orq, running("escavador:estoque"):
        # The workers copy every result onto orq.resultado_coleta.<alvo>: the replayed one too.
        orq.assinar("orq.resultado_coleta.estoque", respostas.append)
        job = orq.iniciar_coleta("estoque", {"sku": "CAF-250"}).wait(30)
        print(job.status, job.erro and job.erro["mensagem"])  # dead-lettered after 2 attempts
        for carta in orq.dead_letters("escavador_estoque"):
            print("dead letter:", carta.headers[DLQ_REASON])  # why, as the worker said it
        FORNECEDOR["no_ar"] = True  # the cause is fixed
        print("replayed:", orq.replay("escavador_estoque", message_id=job.message_id))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(
            m.dados["status"] == "ok" and m.dados["causation_id"] == job.message_id for m in respostas
        ):
            time.sleep(0.1)
        estados = [m.dados["status"] for m in respostas if m.dados["causation_id"] == job.message_id]
        print("results of the job:", estados)
        print(orq.rastrear(job.correlation_id)[["tipo", "evento", "status", "tentativa"]].to_string())
        assert job.status == "dead-lettered" and estados == ["erro", "ok"]
        return estados


if __name__ == "__main__":
    main()
