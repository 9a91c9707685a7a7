"""The toolkit's own topics fire for real jobs on every broker: the result on
``orq.<tipo_evento>.<alvo>`` and the lifecycle on ``orq.eventos.<alvo>.<evento>``."""

from __future__ import annotations

import uuid

import pytest

from orquestrador import Orquestrador, TopicMessage
from orquestrador.errors import JobFailed
from orquestrador.plugins import Plugin
from orquestrador.worker import WorkerOptions
from tests.background import BackgroundWorker
from tests.workers import wait_for


def metade(payload: dict) -> dict:
    if payload["n"] % 2:
        raise ValueError(f"{payload['n']} is odd")
    return {"metade": payload["n"] // 2}


def test_result_and_lifecycle_topics_fire_for_a_real_job(broker_url: str) -> None:
    plugin = Plugin("escavador", f"metade_{uuid.uuid4().hex[:8]}", metade, "tests", max_tentativas=2)
    got: list[TopicMessage] = []
    options = WorkerOptions(backoff_base=0.05)
    with Orquestrador(broker_url, responder_para=f"tt_{uuid.uuid4().hex[:8]}") as orq:
        results = orq.assinar(f"orq.*.{plugin.nome}", got.append)  # results: tipo_evento first
        lifecycle = orq.assinar(f"orq.eventos.{plugin.nome}.*", got.append)
        with BackgroundWorker(broker_url, [plugin], options):
            ok = orq.iniciar_coleta(plugin.nome, {"n": 4})
            assert orq.solicitar(plugin.nome, {"n": 4}, timeout=60) == {"metade": 2}
            with pytest.raises(JobFailed):
                orq.solicitar(plugin.nome, {"n": 3}, timeout=60)
            topics = lambda: sorted(m.topico.rsplit(".", 1)[-1] if "eventos" in m.topico  # noqa: E731
                                    else m.topico.split(".")[1] for m in got)  # fmt: skip
            wanted = ["dead_letter", "iniciado", "iniciado", "iniciado", "iniciado",
                      "resultado_coleta", "resultado_coleta", "resultado_coleta", "retry"]  # fmt: skip
            wait_for(lambda: topics() == wanted, 30)
        results.cancelar()
        lifecycle.cancelar()
    by_job = [m for m in got if m.topico == f"orq.resultado_coleta.{plugin.nome}"]
    done = next(m for m in by_job if m.dados["causation_id"] == ok.message_id)
    assert done.correlation_id == ok.correlation_id
    assert done.dados["status"] == "ok" and done.dados["payload"] == {"metade": 2}
    assert done.dados["alvo"] == plugin.nome and done.dados["tentativa"] == 1
    failed = next(m for m in by_job if m.dados["status"] == "erro")
    assert failed.dados["erro"]["mensagem"] == "3 is odd" and failed.dados["tentativa"] == 2
    retry = next(m for m in got if m.topico.endswith(".retry"))
    assert retry.dados["evento"] == "retry" and retry.correlation_id == failed.correlation_id
    assert retry.dados["detalhe"]["erro"]["mensagem"] == "3 is odd"
