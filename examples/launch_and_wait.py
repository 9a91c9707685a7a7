"""Launch one job and wait for its result: the smallest round trip through a real broker.

``python examples/launch_and_wait.py`` (the embedded NATS server, or ``$ORQ_BROKER_URL``).
"""

from __future__ import annotations

from typing import Any

from _worker import running

from orquestrador import Orquestrador, escavador


@escavador("saudacao")
def saudacao(payload: dict[str, Any]) -> dict[str, Any]:
    return {"mensagem": f"olá, {payload['nome']}!"}


def main() -> dict[str, Any]:
    with Orquestrador() as orq, running("escavador:saudacao"):
        job = orq.iniciar_coleta("saudacao", {"nome": "Ana"})  # returns at once
        job.wait(30)  # blocks until the worker answered (JobTimeout if it takes longer)
        print(job.status, job.result)
        assert job.status == "ok"
        return job.result or {}


if __name__ == "__main__":
    main()
