"""Plugins that worker processes started by the tests import with ``--module tests.plugins_teste``.

Names carry ``ORQ_TEST_PLUGIN_SUFFIX`` so that runs sharing a broker never share a queue.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

from orquestrador import Contexto, PermanentFailure, Pipeline, escavador

SUFFIX = os.environ.get("ORQ_TEST_PLUGIN_SUFFIX", "t")


@escavador(f"eco_{SUFFIX}")
def eco(payload: dict[str, Any], ctx: Contexto) -> dict[str, Any]:
    return {"eco": payload, "pid": os.getpid(), "tentativa": ctx.tentativa}


@escavador(f"lento_{SUFFIX}")
def lento(payload: dict[str, Any], ctx: Contexto) -> dict[str, Any]:
    # time.sleep stands for a handler blocked in C code: it never yields to the event loop.
    time.sleep(float(payload.get("segundos", 1.0)))
    return {"pid": os.getpid(), "tentativa": ctx.tentativa}


@escavador(f"lista_{SUFFIX}")
def lista(payload: dict[str, Any]) -> dict[str, Any]:
    return {"itens": list(range(payload["n"]))}


@escavador(f"quadrado_{SUFFIX}")
def quadrado(payload: dict[str, Any]) -> dict[str, Any]:
    return {"quadrado": payload["x"] ** 2}


# A pipeline declared in a module, so `orq worker pipeline` can run it by name.
pipeline_teste = Pipeline(f"teste_{SUFFIX}").regra(
    f"escavador:lista_{SUFFIX}", f"escavador:quadrado_{SUFFIX}", lambda r: [{"x": i} for i in r["itens"]]
)


@escavador(f"falha_uma_vez_{SUFFIX}", max_tentativas=3)
def falha_uma_vez(payload: dict[str, Any], ctx: Contexto) -> dict[str, Any]:
    # Logs through the context and through its own logger: both lines must name the job.
    ctx.log.info("handling attempt %d", ctx.tentativa)
    logging.getLogger("plugins_teste").info("own logger, attempt %d", ctx.tentativa)
    if ctx.tentativa == 1:
        raise RuntimeError("first attempt fails on purpose")
    return {"tentativa": ctx.tentativa}


@escavador(f"recusa_{SUFFIX}")
def recusa(payload: dict[str, Any]) -> dict[str, Any]:
    raise PermanentFailure("refused on purpose")


@escavador(f"modulos_{SUFFIX}")
def modulos(payload: dict[str, Any]) -> dict[str, Any]:
    """What a real worker process has imported while it runs jobs."""
    return {m: m in sys.modules for m in ("pandas", "ipywidgets", "pyarrow", "rich", "prometheus_client")}
