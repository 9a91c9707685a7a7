"""Workers for the examples, inside the example's own process so each one runs alone.

In real use a worker is its own process, started in a terminal (or by a service manager):
``orq worker escavador NAME --module my_module``. Here a thread runs the same
:class:`orquestrador.Worker` for the example's plugins, and stops it (draining) at the end.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from orquestrador import Worker, WorkerOptions, registry
from orquestrador.brokers import connect, resolve_url


@contextmanager
def running(
    *names: str, url: str | None = None, options: WorkerOptions | None = None, metrics: Any = None
) -> Iterator[None]:
    """A worker serving the registered plugins ``names`` ("escavador:x", "executor:y") while
    the block runs (``metrics``: a recorder such as ``orq worker --metrics-port`` uses)."""
    plugins = [registry.get(*name.split(":", 1)) for name in names]
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, Any] = {}

    async def serve() -> None:
        try:
            broker = await connect(resolve_url(url))
        except BaseException as exc:  # e.g. the broker is unreachable: raised in the example
            holder["error"] = exc
            ready.set()
            return
        try:
            options_ = options or WorkerOptions(backoff_base=0.2)
            holder["worker"] = Worker(broker, plugins, options_, metrics=metrics)
            ready.set()
            await holder["worker"].run()
        finally:
            ready.set()
            await broker.close()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    ready.wait(30)
    if "error" in holder:
        raise holder["error"]
    try:
        yield
    finally:
        if "worker" in holder:
            loop.call_soon_threadsafe(holder["worker"].stop)
        thread.join(30)
