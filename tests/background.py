"""A worker on a thread and loop of its own, as a separate process would be (cheap for tests
that need one on every broker, the in-process memory broker included)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

from orquestrador import Worker, WorkerOptions
from orquestrador.brokers import connect
from orquestrador.plugins import Plugin


class BackgroundWorker:
    def __init__(self, url: str, plugins: Sequence[Plugin], options: WorkerOptions | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self.worker: Worker | None = None
        self._ready = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(
            target=self.loop.run_until_complete, args=(self._run(url, plugins, options),), daemon=True
        )
        self.thread.start()
        if not self._ready.wait(30):
            raise AssertionError("the background worker did not start")
        if self.error is not None:
            raise self.error

    async def _run(self, url: str, plugins: Sequence[Plugin], options: WorkerOptions | None) -> None:
        try:
            broker = await connect(url)
        except BaseException as exc:
            self.error = exc
            self._ready.set()
            raise
        try:
            self.worker = Worker(broker, list(plugins), options or WorkerOptions(backoff_base=0.05))
            self._ready.set()
            await self.worker.run()
        finally:
            await broker.close()

    def stop(self) -> None:
        if self.worker is not None:
            self.loop.call_soon_threadsafe(self.worker.stop)
        self.thread.join(30)

    def __enter__(self) -> BackgroundWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
