"""Chaos: a job that kills its worker process on every attempt (os._exit, like the OOM killer).

A supervisor (this test, as systemd or Kubernetes would) restarts the worker each time it dies.
The attempt count comes from the broker, so after ``max_tentativas`` deaths the next worker
dead-letters the job without running it, instead of dying forever.
"""

from __future__ import annotations

from pathlib import Path

from orquestrador.brokers.base import DLQ_ERROR_TYPE
from tests.chaos.harness import Cenario, Linha, drenar_dlq, esperar_finais, execucoes, fechar

MAX_TENTATIVAS = 3
GOOD = 20


async def test_a_job_that_kills_its_worker_every_time_ends_in_the_dlq(
    broker_name: str, url: str, suffix: str, run_log: Path, report
):
    async with Cenario(url, suffix, plugin="suicida") as c:
        options = ("--max-tentativas", str(MAX_TENTATIVAS))
        # One job at a time, so only the killer's attempts are cut short by its deaths.
        worker = await c.worker(*options, concurrency=1, visibility_timeout=2)
        killer = await c.orq.iniciar("iniciar_coleta", c.alvo, {"morrer": True})
        good = await c.orq.iniciar_lote("iniciar_coleta", c.alvo, [{"i": i} for i in range(GOOD)])
        ids = [killer.message_id or "", *(e.message_id or "" for e in good)]
        deaths = 0
        while deaths <= 2 * MAX_TENTATIVAS:
            counts = await esperar_finais(c.orq, ids, timeout=0.5)
            if sum(counts.values()) == len(ids) and "queued" not in counts and "running" not in counts:
                break
            if worker.proc.poll() is not None:
                deaths += 1
                worker = await c.worker(*options, concurrency=1, visibility_timeout=2)
        mortos = await drenar_dlq(c.broker, c.fila, 1, timeout=20)
        left = await c.broker.stats(c.fila)  # e.g. JetStream past max deliveries keeps messages
        alive = worker.proc.poll() is None

    runs = execucoes(run_log)
    linha = Linha(broker_name, "job that kills its worker each time", nota=f"{deaths} worker deaths")
    report(fechar(linha, c.orq, ids, counts, c.started, runs=runs, mortos=mortos))

    assert linha.perdidos == 0, counts
    assert deaths == MAX_TENTATIVAS, "the worker died once per attempt, and no more"
    assert runs[killer.message_id or ""] == MAX_TENTATIVAS
    row = c.orq.store.job(killer.message_id or "")
    assert row.estado == "dead-lettered"
    assert row.erro["tipo"] == "WorkerLost"
    assert f"exceeds max_tentativas={MAX_TENTATIVAS}" in row.erro["mensagem"]
    [dead] = mortos
    assert dead.headers[DLQ_ERROR_TYPE] == "WorkerLost"
    assert counts == {"ok": GOOD, "dead-lettered": 1}
    assert alive, "the last worker dead-lettered the job instead of running it"
    assert (left.depth, left.in_flight) == (0, 0), "nothing is left behind in the queue"
