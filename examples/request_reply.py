"""Request-reply: run one job and get its result back, or a clear reason why not.

``python examples/request_reply.py``

``solicitar`` is a job like any other (recorded, retried, dead-lettered) whose caller waits for
the answer: ``JobTimeout`` when none came in time (the job stays recorded and may still finish),
``JobFailed`` with the worker's error when it failed. From a shell:
``orq request coleta conversor '{"celsius": 30}' --timeout 10``.
"""

from __future__ import annotations

from typing import Any

from _worker import running

from orquestrador import JobFailed, JobTimeout, Orquestrador, PermanentFailure, escavador


@escavador("conversor")
def conversor(payload: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(payload.get("celsius"), int | float):
        raise PermanentFailure("give 'celsius' as a number")  # no retry can fix this input
    return {"fahrenheit": payload["celsius"] * 9 / 5 + 32}


def main() -> dict[str, Any]:
    with Orquestrador() as orq:
        try:
            orq.solicitar("conversor", {"celsius": 30}, timeout=0.5)  # no worker yet
        except JobTimeout as exc:
            print("timed out:", exc)
            esperando = orq.job(exc.message_id or "")
        with running("escavador:conversor"):
            resposta = orq.solicitar("conversor", {"celsius": 100}, timeout=30)
            print("answer:", resposta)
            try:
                orq.solicitar("conversor", {"celsius": "quente"}, timeout=30)
            except JobFailed as exc:
                print("failed:", exc.erro and exc.erro["mensagem"])
            assert esperando is not None and esperando.wait(30).result == {"fahrenheit": 86.0}
        assert resposta == {"fahrenheit": 212.0}
        return resposta


if __name__ == "__main__":
    main()
