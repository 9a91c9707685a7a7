"""Chaos: a worker process is SIGKILLed while it holds jobs; the others finish them, none lost."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

from orquestrador.brokers import connect
from tests.chaos.harness import Contador, Linha, esperar_finais, execucoes, execucoes_por_pid, fechar
from tests.workers import start_worker

JOBS = 400
MODULE = ["--module", "tests.chaos.plugins_caos"]


async def test_worker_sigkill_mid_batch(broker_name: str, url: str, suffix: str, run_log: Path, report):
    alvo, fila = f"trabalho_{suffix}", f"escavador_trabalho_{suffix}"
    linha = Linha(broker_name, "worker SIGKILL mid-batch")
    orq = Contador(url, responder_para=f"res_{suffix}")
    await orq.start()
    start = time.monotonic()

    def worker():  # type: ignore[no-untyped-def]
        return start_worker(url, "trabalho", suffix, concurrency=8, visibility_timeout=3, extra=MODULE)

    victim, survivor = await asyncio.gather(asyncio.to_thread(worker), asyncio.to_thread(worker))
    workers = [victim, survivor]
    try:
        sent = await orq.iniciar_lote(
            "iniciar_coleta", alvo, [{"i": i, "segundos": 0.1} for i in range(JOBS)]
        )
        ids = [e.message_id or "" for e in sent]
        while orq.store.count_by_state(ids).get("ok", 0) < JOBS // 5:
            await asyncio.sleep(0.05)
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(10)
        workers.append(await asyncio.to_thread(worker))  # a restarted worker joins the survivor
        counts = await esperar_finais(orq, ids, timeout=120)
    finally:
        for w in workers:
            await asyncio.to_thread(w.stop)

    runs = execucoes(run_log)
    by_victim = execucoes_por_pid(run_log).get(victim.pid, set())
    rows = {mid: orq.store.job(mid) for mid in ids}
    abandoned = [m for m in by_victim if rows[m] and (rows[m].resultado or {}).get("pid") != victim.pid]
    broker = await connect(url)
    try:
        dead = (await broker.stats(fila)).dead_letters
        for queue in (fila, orq.responder_para):
            await broker.delete(queue)
    finally:
        await broker.close()
    await orq.close()

    linha.nota = f"{len(abandoned)} jobs taken from the killed worker"
    report(fechar(linha, orq, ids, counts, start, runs=runs))
    linha.mortos = dead

    assert linha.perdidos == 0, counts
    assert counts == {"ok": JOBS}, "one row per job, every one ok"
    assert dead == 0
    assert abandoned, "the victim was killed while it held jobs"
    assert all(rows[m].tentativa >= 2 for m in abandoned), "redeliveries count as attempts"
    assert all(rows[m].resultado["pid"] != victim.pid for m in abandoned)
