"""What the benchmark processes share: message bodies, percentiles, memory from /proc, results.

Every scenario process prints one line ``BENCH_RESULT {json}`` on stdout; the driver reads it.
The raw baselines send the same envelope shape as the toolkit (same fields, same ~300 bytes),
built with ``json`` by hand, so the comparison is about the machinery, not the message size.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULT_PREFIX = "BENCH_RESULT "
READY_LINE = "BENCH_READY"


def emit(result: dict[str, Any]) -> None:
    """Hand the scenario's numbers to the driver (one line on stdout)."""
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()


def parse_result(stdout: str) -> dict[str, Any] | None:
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            parsed: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
            return parsed
    return None


def ready() -> None:
    """A raw worker tells the driver it is subscribed."""
    sys.stderr.write(READY_LINE + "\n")
    sys.stderr.flush()


def job_payload(seq: int) -> dict[str, Any]:
    """The payload of job ``seq``: with the envelope around it, ~320 bytes on the wire."""
    return {"seq": seq, "url": f"https://exemplo.com.br/produtos/{seq:08d}"}


def now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def raw_request(seq: int, alvo: str, results_queue: str) -> tuple[str, bytes]:
    """A request envelope as a raw producer would write it: (message_id, body)."""
    message_id = str(uuid.uuid4())
    body = {
        "correlation_id": str(uuid.uuid4()),
        "tipo_evento": "iniciar_coleta",
        "payload": job_payload(seq),
        "timestamp": now_iso(),
        "message_id": message_id,
        "alvo": alvo,
        "responder_para": results_queue,
        "headers": {},
        "versao": 1,
    }
    return message_id, json.dumps(body, separators=(",", ":")).encode()


def handle(payload: dict[str, Any]) -> dict[str, Any]:
    """The work both the toolkit's escavador and the raw workers do: a small dict."""
    return {"seq": payload.get("seq"), "tamanho": len(str(payload.get("url", ""))), "ok": True}


def result_envelope(env: dict[str, Any], worker: str) -> dict[str, Any]:
    """The result a hand-written worker answers a request envelope with (raw and peer workers)."""
    return {
        "correlation_id": env["correlation_id"],
        "tipo_evento": "resultado_coleta",
        "payload": handle(env.get("payload") or {}),
        "timestamp": now_iso(),
        "message_id": str(uuid.uuid4()),
        "causation_id": env.get("message_id"),
        "alvo": env.get("alvo"),
        "tentativa": 1,
        "headers": {},
        "versao": 1,
        "status": "ok",
        "worker": worker,
    }


def raw_result(body: bytes, worker: str) -> tuple[str, bytes]:
    """Decode a request the way a raw worker would and answer it: (reply queue, result body)."""
    env = json.loads(body)
    result = result_envelope(env, worker)
    return env.get("responder_para") or "", json.dumps(result, separators=(",", ":")).encode()


def causation_of(body: bytes) -> str:
    """What a raw collector reads from a result: the request's message_id."""
    return str(json.loads(body).get("causation_id") or "")


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile of ``values`` (need not be sorted); None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def latency_summary(sched: dict[str, float], done: dict[str, float], sent: int) -> dict[str, Any]:
    """p50/p99 (ms) from scheduled send time to result received, per message id."""
    lat = [(done[k] - sched[k]) * 1000 for k in sched if k in done]
    return {
        "sent": sent,
        "received": len(lat),
        "p50_ms": percentile(lat, 50),
        "p99_ms": percentile(lat, 99),
        "max_ms": max(lat) if lat else None,
    }


def proc_memory(pid: int | None = None) -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) in MiB from /proc (psutil is not a dependency)."""
    path = Path(f"/proc/{pid or os.getpid()}/status")
    out: dict[str, float] = {}
    try:
        for line in path.read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return out


def cpu_seconds(pid: int | None = None) -> float | None:
    """User + system CPU time of a process so far (from /proc/<pid>/stat)."""
    try:
        fields = Path(f"/proc/{pid or os.getpid()}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def stop_on_signal(callback: Any) -> None:
    """SIGTERM/SIGINT call ``callback`` (inside the running loop) so a worker drains and exits."""
    import asyncio

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, callback)


def machine_info() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_total = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_total = round(int(line.split()[1]) / 1024 / 1024, 1)
    except (OSError, ValueError):
        pass
    return {
        "nproc": os.cpu_count(),
        "memory_gib": mem_total,
        "cpu_model": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_start": _loadavg(),
    }


def _loadavg() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except (OSError, ValueError):
        return []


def loadavg() -> list[float]:
    return _loadavg()


class Deadline:
    """A time bound for a loop: ``while not deadline.passed``."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    @property
    def passed(self) -> bool:
        return time.monotonic() >= self.end

    @property
    def left(self) -> float:
        return max(0.0, self.end - time.monotonic())
