"""What the notebook tests share: a page handler that attacks, a worker on a thread, polling."""

from __future__ import annotations

import asyncio
import threading
import time

from orquestrador import Worker, WorkerOptions
from orquestrador.brokers import connect
from orquestrador.errors import PermanentFailure
from orquestrador.plugins import Plugin

EVIL = "<img src=x onerror=alert(1)>"
ESCAPED = "&lt;img src=x onerror=alert(1)&gt;"


def pagina(payload: dict) -> dict:
    """Stands in for a scraped page whose title is an attack."""
    if payload.get("falhar"):
        raise PermanentFailure(f"bad page {EVIL}")
    return {"titulo": payload.get("titulo", "ok"), "n": payload.get("n")}


class BackgroundWorker:
    """A worker on its own thread and loop, as a separate process would be."""

    def __init__(
        self, url: str, nome: str, handler=pagina, concurrency: int = 32, max_tentativas: int = 1
    ) -> None:  # type: ignore[no-untyped-def]
        self.loop = asyncio.new_event_loop()
        self.worker: Worker | None = None
        plugin = Plugin("escavador", nome, handler, "tests", max_tentativas=max_tentativas)
        job = self._run(url, plugin, concurrency)
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(job,))
        self.thread.start()

    async def _run(self, url: str, plugin: Plugin, concurrency: int) -> None:
        broker = await connect(url)
        self.worker = Worker(broker, [plugin], WorkerOptions(concurrency=concurrency))
        await self.worker.run()

    def stop(self) -> None:
        while self.worker is None:
            time.sleep(0.01)
        self.loop.call_soon_threadsafe(self.worker.stop)
        self.thread.join(10)


def wait_until(check, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)
    return value
