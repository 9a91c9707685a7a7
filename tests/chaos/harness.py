"""What the chaos scenarios share: an orchestrator that counts every result it receives, the
row each scenario reports, and helpers to wait for jobs and read dead letters."""

from __future__ import annotations

import asyncio
import collections
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from orquestrador import AsyncOrquestrador
from orquestrador import envelope as wire
from orquestrador.brokers import connect
from orquestrador.brokers.base import DLQ_ERROR_TYPE, DLQ_REASON, Broker, Delivery, dlq_of
from orquestrador.errors import EnvelopeError
from orquestrador.vocabulary import FINAIS
from tests.workers import WorkerProcess, start_worker

MODULE = "tests.chaos.plugins_caos"
# moto, the tests' SQS, scans a whole queue on every receive and keeps it in one process, so a
# deep queue and many requests slow it far beyond AWS: SQS scenarios run a twentieth of the
# volume (README, "Tests").
SMALLER = {"sqs": 20}


def volume(broker_name: str, jobs: int, *, at_least: int = 1) -> int:
    """How many jobs a scenario sends on ``broker_name``: ``jobs``, but divided where
    :data:`SMALLER` says, down to ``at_least`` (what the scenario needs to mean anything)."""
    return max(at_least, jobs // SMALLER.get(broker_name, 1))


# On moto every request waits its turn, so a short job spends most of its time in SQS calls, not in
# its handler: where a scenario needs workers caught inside handlers, SQS jobs last this much longer.
SLOWER = {"sqs": 5}


def job_seconds(broker_name: str, seconds: float) -> float:
    return seconds * SLOWER.get(broker_name, 1)


@dataclass
class Linha:
    """One scenario on one broker: the row of the summary table."""

    broker: str
    cenario: str
    enviados: int = 0  # jobs (and raw inputs) published
    resultados: int = 0  # jobs with a result in the store
    duplicados: int = 0  # result deliveries beyond the first per job, seen by the orchestrator
    execucoes: int | None = None  # handler runs, when the plugin logs them (>= jobs: redeliveries)
    perdidos: int = 0  # must be 0
    mortos: int = 0  # dead letters
    motivos: dict[str, int] = field(default_factory=dict)  # dead-letter reasons, grouped
    segundos: float = 0.0
    nota: str = ""


@dataclass(frozen=True)
class Morto:
    """A dead letter as read back from ``<fila>.dlq``."""

    headers: dict[str, str]
    body: bytes

    @property
    def reason(self) -> str:
        return self.headers.get(DLQ_REASON, "")


def fechar(
    linha: Linha,
    orq: Contador,
    ids: Sequence[str],
    counts: dict[str, int],
    started: float,
    *,
    runs: collections.Counter[str] | None = None,
    mortos: Sequence[Morto] = (),
    enviados: int | None = None,
) -> Linha:
    """Fill in the counts of a finished scenario."""
    linha.enviados = len(ids) if enviados is None else enviados
    linha.resultados = sum(counts.get(e, 0) for e in FINAIS)
    linha.duplicados = orq.duplicados
    linha.execucoes = None if runs is None else sum(runs[m] for m in ids)
    linha.perdidos = perdidos(counts, len(ids))
    linha.mortos, linha.motivos = len(mortos), agrupar(mortos)
    linha.segundos = time.monotonic() - started
    return linha


class Contador(AsyncOrquestrador):
    """An orchestrator that also counts raw result deliveries per job (before the store dedupes)."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.entregas: collections.Counter[str] = collections.Counter()

    async def _record(self, batch: list[Delivery]) -> None:
        for delivery in batch:
            try:
                env = wire.decode(delivery.body)
            except EnvelopeError:
                continue
            if env.causation_id and not env.extras.get("parcial"):
                self.entregas[env.causation_id] += 1
        await super()._record(batch)

    @property
    def duplicados(self) -> int:
        return sum(n - 1 for n in self.entregas.values() if n > 1)


class Cenario:
    """One scenario's orchestrator, broker connection and worker processes, cleaned up on exit:
    workers stopped, this run's queues deleted (shared servers stay as found)."""

    def __init__(self, url: str, suffix: str, plugin: str = "trabalho") -> None:
        self.url, self.suffix, self.plugin = url, suffix, plugin
        self.alvo = f"{plugin}_{suffix}"
        self.fila = f"escavador_{self.alvo}"
        self.orq = Contador(url, responder_para=f"res_{suffix}")
        self.workers: list[WorkerProcess] = []
        self.started = 0.0
        self._broker: Broker | None = None

    @property
    def broker(self) -> Broker:
        assert self._broker is not None, "use Cenario in an async with"
        return self._broker

    async def __aenter__(self) -> Cenario:
        await self.orq.start()
        self._broker = await connect(self.url)
        self.started = time.monotonic()
        return self

    async def worker(
        self, *extra: str, concurrency: int = 8, visibility_timeout: float = 10
    ) -> WorkerProcess:
        """A real ``orq worker`` process serving this scenario's plugin."""
        process = await asyncio.to_thread(
            start_worker, self.url, self.plugin, self.suffix, concurrency=concurrency,
            visibility_timeout=visibility_timeout, extra=["--module", MODULE, *extra],
        )  # fmt: skip
        self.workers.append(process)
        return process

    async def __aexit__(self, *exc: object) -> None:
        try:
            await asyncio.gather(*(asyncio.to_thread(w.stop) for w in self.workers))
            for queue in (self.fila, self.orq.responder_para):
                await self.broker.delete(queue)
            await self.broker.close()
        finally:
            await self.orq.close()


async def esperar_finais(orq: AsyncOrquestrador, ids: Sequence[str], timeout: float) -> dict[str, int]:
    """Poll the store until every job in ``ids`` is final (or ``timeout``); returns counts by state."""
    deadline = time.monotonic() + timeout
    while True:
        counts = orq.store.count_by_state(list(ids))
        if sum(counts.get(e, 0) for e in FINAIS) >= len(ids) or time.monotonic() > deadline:
            return counts
        await asyncio.sleep(0.25)


def perdidos(counts: dict[str, int], jobs: int) -> int:
    """Jobs that never reached a final state (ok, erro or dead-lettered)."""
    return jobs - sum(counts.get(e, 0) for e in FINAIS)


def motivo(reason: str, error_type: str) -> str:
    """Group dead-letter reasons: the error type and the reason's first clause, without numbers."""
    if reason.startswith("tipo_evento"):
        head = "wrong tipo_evento for the queue"
    elif reason.startswith("message is"):
        head = "too large"
    else:
        parts = [p.strip() for p in reason.split(":")]
        if parts[0] == error_type and len(parts) > 1:
            parts = parts[1:]
        head = parts[0]
        if head == "not a valid envelope" and len(parts) > 1:
            head += f" ({parts[1].split('.')[0]})"
    head = re.sub(r"[0-9]+", "N", head)[:60]
    return head if error_type == "EnvelopeError" else f"{error_type}: {head}"


async def drenar_dlq(broker: Broker, fila: str, esperados: int, timeout: float) -> list[Morto]:
    """Consume (and ack) the dead letters of ``fila`` until ``esperados`` arrived or ``timeout``,
    then one more read: anything beyond what was expected would be a wrongly dead-lettered job."""
    consumer = await broker.consume(dlq_of(fila), visibility_timeout=60.0, prefetch=256)
    mortos: list[Morto] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            done = len(mortos) >= esperados or time.monotonic() > deadline
            batch = await consumer.fetch(256, timeout=1.0 if done else 0.5)
            mortos += [Morto(d.headers, d.body) for d in batch]
            await asyncio.gather(*(d.ack() for d in batch))
            if done and not batch:
                return mortos
    finally:
        await consumer.close()


def agrupar(mortos: Sequence[Morto]) -> dict[str, int]:
    counts = collections.Counter(motivo(m.reason, m.headers.get(DLQ_ERROR_TYPE, "?")) for m in mortos)
    return dict(counts.most_common())


def execucoes(log: Path) -> collections.Counter[str]:
    """Handler runs per message_id, from the plugins' run log."""
    if not log.exists():
        return collections.Counter()
    return collections.Counter(line.split()[1] for line in log.read_text().splitlines() if " " in line)


def execucoes_por_pid(log: Path) -> dict[int, set[str]]:
    out: dict[int, set[str]] = collections.defaultdict(set)
    if log.exists():
        for line in log.read_text().splitlines():
            pid, _, mid = line.partition(" ")
            out[int(pid)].add(mid)
    return out
