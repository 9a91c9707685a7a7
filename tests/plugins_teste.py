"""Plugins that worker processes started by the tests import with ``--module tests.plugins_teste``.

Names carry ``ORQ_TEST_PLUGIN_SUFFIX`` so that runs sharing a broker never share a queue.
"""

from __future__ import annotations

import os
import time
from typing import Any

from orquestrador import Contexto, escavador

SUFFIX = os.environ.get("ORQ_TEST_PLUGIN_SUFFIX", "t")


@escavador(f"eco_{SUFFIX}")
def eco(payload: dict[str, Any], ctx: Contexto) -> dict[str, Any]:
    return {"eco": payload, "pid": os.getpid(), "tentativa": ctx.tentativa}


@escavador(f"lento_{SUFFIX}")
def lento(payload: dict[str, Any], ctx: Contexto) -> dict[str, Any]:
    # time.sleep stands for a handler blocked in C code: it never yields to the event loop.
    time.sleep(float(payload.get("segundos", 1.0)))
    return {"pid": os.getpid(), "tentativa": ctx.tentativa}
