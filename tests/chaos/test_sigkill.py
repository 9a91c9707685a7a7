"""Chaos: a worker process is SIGKILLed while it holds jobs; the others finish them, none lost."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from orquestrador.vocabulary import FINAIS
from tests.chaos.harness import (
    Cenario,
    Linha,
    esperar_finais,
    execucoes,
    execucoes_por_pid,
    fechar,
    job_seconds,
    volume,
)

JOBS = 400


def held(c: Cenario, run_log: Path, pid: int) -> bool:
    """Whether ``pid`` has started a job that has no final row yet."""
    rows = (c.orq.store.job(mid) for mid in execucoes_por_pid(run_log).get(pid, set()))
    return any(row is None or row.estado not in FINAIS for row in rows)


async def test_worker_sigkill_mid_batch(broker_name: str, url: str, suffix: str, run_log: Path, report):
    jobs, seconds = volume(broker_name, JOBS, at_least=200), job_seconds(broker_name, 0.1)
    async with Cenario(url, suffix) as c:
        victim, _ = await asyncio.gather(*(c.worker(visibility_timeout=3) for _ in range(2)))
        payloads = [{"i": i, "segundos": seconds} for i in range(jobs)]
        ids = [e.message_id or "" for e in await c.orq.iniciar_lote("iniciar_coleta", c.alvo, payloads)]
        # A worker runs its jobs in batches of its concurrency, and between two batches it holds
        # none for a moment; the kill waits until the victim has started jobs that have no
        # result yet, so that it really dies holding them.
        while c.orq.store.count_by_state(ids).get("ok", 0) < jobs // 5 or not held(c, run_log, victim.pid):
            await asyncio.sleep(0.01)
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(10)
        await c.worker(visibility_timeout=3)  # a restarted worker joins the survivor
        counts = await esperar_finais(c.orq, ids, timeout=120)
        dead = (await c.broker.stats(c.fila)).dead_letters

    runs = execucoes(run_log)
    rows = {mid: c.orq.store.job(mid) for mid in ids}
    by_victim = execucoes_por_pid(run_log).get(victim.pid, set())
    abandoned = [m for m in by_victim if rows[m] and (rows[m].resultado or {}).get("pid") != victim.pid]
    linha = Linha(
        broker_name, "worker SIGKILL mid-batch", nota=f"{len(abandoned)} jobs taken from the killed one"
    )
    report(fechar(linha, c.orq, ids, counts, c.started, runs=runs))
    linha.mortos = dead

    assert linha.perdidos == 0, counts
    assert counts == {"ok": jobs}, "one row per job, every one ok"
    assert dead == 0
    assert abandoned, "the victim was killed while it held jobs"
    assert all(rows[m].tentativa >= 2 for m in abandoned), "redeliveries count as attempts"
