"""The toolkit's own topics fire for real jobs on every broker: the result on
``orq.<tipo_evento>.<alvo>`` and the lifecycle on ``orq.eventos.<alvo>.<evento>``."""

from __future__ import annotations

import time
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


@pytest.mark.parametrize(("setting", "expected"), [("results", {"resultado_coleta"}), ("off", set())])
def test_orq_topics_chooses_what_workers_copy(
    setting: str, expected: set[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORQ_TOPICS", setting)
    url = f"memory://{uuid.uuid4().hex}"
    plugin = Plugin("escavador", f"metade_{uuid.uuid4().hex[:8]}", metade, "tests")
    got: list[TopicMessage] = []
    with Orquestrador(url) as orq, orq.assinar("orq.>", got.append), BackgroundWorker(url, [plugin]):
        assert orq.solicitar(plugin.nome, {"n": 2}, timeout=10) == {"metade": 1}
        if expected:
            wait_for(lambda: got, 10)
        time.sleep(0.5)  # ten flushes of the worker's batch: whatever it sends has arrived
    assert {m.topico.split(".")[1] for m in got} == expected


def test_a_bad_orq_topics_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from orquestrador import settings
    from orquestrador.errors import ConfigError

    monkeypatch.setenv("ORQ_TOPICS", "resluts")
    with pytest.raises(ConfigError, match="ORQ_TOPICS='resluts': use one of on, results, off"):
        settings.toolkit_topics()
