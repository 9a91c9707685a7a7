"""Plugins the chaos suite's worker processes import (``--module tests.chaos.plugins_caos``).

Names carry ``ORQ_TEST_PLUGIN_SUFFIX`` so runs sharing a broker never share a queue. Every run of
a handler appends ``<pid> <message_id>`` to ``ORQ_CHAOS_LOG`` (when set), so a test can count
how often the broker handed a job to a handler, across processes that were killed.
"""

from __future__ import annotations

import os
import time
from typing import Any

from orquestrador import Contexto, escavador

SUFFIX = os.environ.get("ORQ_TEST_PLUGIN_SUFFIX", "t")
LOG = os.environ.get("ORQ_CHAOS_LOG")


def _log_run(ctx: Contexto) -> None:
    if LOG:
        # One short O_APPEND write per line: lines of concurrent threads and processes never mix.
        fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, f"{os.getpid()} {ctx.message_id}\n".encode())
        finally:
            os.close(fd)


@escavador(f"trabalho_{SUFFIX}")
def trabalho(payload: dict[str, Any], ctx: Contexto) -> dict[str, Any]:
    """A job that takes ``segundos``; ``veneno`` makes it fail on every attempt."""
    _log_run(ctx)
    if payload.get("veneno"):
        raise ValueError("poison: this payload crashes the handler every time")
    time.sleep(float(payload.get("segundos", 0)))
    return {"i": payload.get("i"), "pid": os.getpid(), "tentativa": ctx.tentativa}


@escavador(f"suicida_{SUFFIX}")
def suicida(payload: dict[str, Any], ctx: Contexto) -> dict[str, Any]:
    """``morrer`` kills the whole worker process, as the OOM killer would: no exception, no ack."""
    _log_run(ctx)
    if payload.get("morrer"):
        os._exit(137)
    return {"i": payload.get("i"), "pid": os.getpid()}
