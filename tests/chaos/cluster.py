"""What the cluster scenarios share: a started cluster for a fixture, the batch they run, and
their row and assertions (every job answered once in the store, none dead-lettered)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol, TypeVar

from orquestrador.errors import BrokerError
from tests.chaos.harness import Cenario, Linha, esperar_finais, execucoes, fechar

JOBS = 2000


class Startable(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


C = TypeVar("C", bound=Startable)


@contextlib.contextmanager
def running(cluster: C) -> Iterator[C]:
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


async def launch_and_wait_for_a_quarter(c: Cenario) -> tuple[list[str], int]:
    """2,000 short jobs; returns their ids once a quarter is done, and how many are."""
    payloads = [{"i": i, "segundos": 0.005} for i in range(JOBS)]
    ids = [e.message_id or "" for e in await c.orq.iniciar_lote("iniciar_coleta", c.alvo, payloads)]
    while c.orq.store.count_by_state(ids).get("ok", 0) < JOBS // 4:
        await asyncio.sleep(0.05)
    return ids, c.orq.store.count_by_state(ids).get("ok", 0)


async def after_the_kill(c: Cenario, ids: list[str]) -> tuple[dict[str, int], int]:
    """Final states of the batch (up to 5 minutes) and the job queue's dead letters."""
    counts = await esperar_finais(c.orq, ids, timeout=300)
    for _ in range(60):  # the test's own connection may still be failing over to a survivor
        try:
            return counts, (await c.broker.stats(c.fila)).dead_letters
        except BrokerError:
            await asyncio.sleep(0.5)
    return counts, (await c.broker.stats(c.fila)).dead_letters


def report_and_check(
    report: Callable[[Linha], None], c: Cenario, linha: Linha, ids: list[str], counts: dict[str, int],
    dead: int, done_before: int, run_log: Path,
) -> None:  # fmt: skip
    report(fechar(linha, c.orq, ids, counts, c.started, runs=execucoes(run_log)))
    linha.mortos = dead
    assert linha.perdidos == 0, counts
    assert counts == {"ok": JOBS}, "one row per job, every one ok"
    assert dead == 0
    assert done_before < JOBS, "the node died while jobs were still queued"
