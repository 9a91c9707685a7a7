"""The escavador the toolkit's worker runs in the benchmark.

``orq worker escavador <name> --module bench.plugins``: the name comes from ``ORQ_BENCH_PLUGIN``
so every run uses its own queue (``escavador_<name>``) on the shared brokers. The handler is
``async def`` and returns a small dict (the same work as the raw workers, ``common.handle``);
``ORQ_BENCH_SYNC=1`` registers a plain function instead (it runs in the worker's thread pool).
"""

from __future__ import annotations

import os
from typing import Any

from bench.common import handle
from orquestrador import escavador

NAME = os.environ.get("ORQ_BENCH_PLUGIN", "bench_eco")

if os.environ.get("ORQ_BENCH_SYNC") == "1":

    @escavador(NAME)
    def eco(payload: dict[str, Any]) -> dict[str, Any]:
        return handle(payload)

else:

    @escavador(NAME)
    async def eco(payload: dict[str, Any]) -> dict[str, Any]:
        return handle(payload)
