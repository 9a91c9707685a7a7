"""Helpers of the schedule tests: scheduler processes, reading what a schedule fired."""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime

from orquestrador import envelope as wire
from orquestrador.agenda import Agenda, Agendas, Scheduler
from orquestrador.brokers import connect
from tests.workers import ROOT, WorkerProcess

FIRED = re.compile(r"schedule (\S+) fired its (\S+) occurrence")


class SchedulerProcess(WorkerProcess):
    """``orq worker agenda`` in a process of its own, its log lines kept."""

    def __init__(self, url: str, ttl: float = 3.0) -> None:
        command = [sys.executable, "-m", "orquestrador.cli", "worker", "agenda", "-b", url, "--ttl", str(ttl)]
        super().__init__(
            subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        )

    def fired(self, agenda_id: str) -> list[str]:
        """The occurrences this process says it fired (ISO times), in order."""
        return [m.group(2) for line in self.lines if (m := FIRED.search(line)) and m.group(1) == agenda_id]

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self._reader.join(5)

    def stop(self, timeout: float = 20.0) -> int:
        code = super().stop(timeout)
        self._reader.join(5)
        return code


async def save(url: str, agenda: Agenda) -> Agenda:
    broker = await connect(url)
    try:
        return await Agendas(broker.shared_state()).save(agenda)
    finally:
        await broker.close()


async def remove(url: str, agenda_id: str) -> None:
    broker = await connect(url)
    try:
        with contextlib.suppress(Exception):
            await Agendas(broker.shared_state()).remove(agenda_id)
    finally:
        await broker.close()


async def leader(url: str) -> str | None:
    broker = await connect(url)
    try:
        return await Agendas(broker.shared_state()).leader()
    finally:
        await broker.close()


async def drain(url: str, queue: str) -> list[wire.Envelope]:
    """Every job waiting on ``queue``, consumed, then the queue deleted."""
    broker = await connect(url)
    found: list[wire.Envelope] = []
    try:
        await broker.declare(queue)
        consumer = await broker.consume(queue, visibility_timeout=60.0, prefetch=64)
        try:
            # The first wait is long enough for a Kafka consumer to join its group.
            while batch := await consumer.fetch(64, timeout=0.5 if found else 3.0):
                for delivery in batch:
                    found.append(wire.decode(delivery.body))
                    await delivery.ack()
        finally:
            await consumer.close()
        await broker.delete(queue)
    finally:
        await broker.close()
    return found


def occurrences(envelopes: list[wire.Envelope]) -> list[float]:
    return sorted(datetime.fromisoformat(e.extras["agendada_para"]).timestamp() for e in envelopes)


async def run_scheduler(url: str, seconds: float, *, ttl: float = 3.0) -> Counter[str]:
    """An in-process scheduler on its own connection for ``seconds``, stopped cleanly; its
    firings per schedule id."""
    broker = await connect(url)
    try:
        scheduler = Scheduler(broker, owner=f"test-{time.monotonic_ns()}", ttl=ttl, tick=0.1)
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(seconds, stop.set)
        await scheduler.run(stop)
        return scheduler.fired_by
    finally:
        await broker.close()


async def forget(url: str, queue: str) -> None:
    """Delete ``queue`` (what a test's schedule fired there) without reading it."""
    broker = await connect(url)
    try:
        await broker.delete(queue)
    finally:
        await broker.close()
