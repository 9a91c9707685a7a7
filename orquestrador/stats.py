"""Per-alvo job statistics: counts by outcome, throughput and latency percentiles.

One function for ``orq stats`` and ``Orquestrador.metricas()``, so both give the same p95 on
the same jobs. Plain Python (no pandas): ``orq stats`` stays quick to start.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from orquestrador.vocabulary import PENDENTES

# One job: (alvo, estado, enviado_em, concluido_em), times in epoch seconds (None when unknown).
JobTimes = tuple[str | None, str, float | None, float | None]


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile: a latency that some job really had (None without values)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def job_stats(jobs: Iterable[JobTimes]) -> list[dict[str, Any]]:
    """Per alvo (sorted; ``-`` for none): jobs, ok, erro, dead_lettered, pending, throughput
    (finished jobs per second from the first send to the last finish) and p50/p95/p99 latency
    (seconds from send to finish, finished jobs only)."""
    groups: dict[str, list[JobTimes]] = {}
    for job in jobs:
        groups.setdefault(job[0] or "-", []).append(job)
    out = []
    for alvo, items in sorted(groups.items()):
        states = [estado for _, estado, _, _ in items]
        latencies = [done - sent for _, _, sent, done in items if done is not None and sent is not None]
        starts = [sent for _, _, sent, _ in items if sent is not None]
        ends = [done for _, _, _, done in items if done is not None]
        span = (max(ends) - min(starts)) if ends and starts else 0.0
        out.append({
            "alvo": alvo,
            "jobs": len(items),
            "ok": states.count("ok"),
            "erro": states.count("erro"),
            "dead_lettered": states.count("dead-lettered"),
            "pending": sum(1 for s in states if s in PENDENTES),
            "throughput": len(ends) / span if span > 0 else None,
            "p50": percentile(latencies, 50),
            "p95": percentile(latencies, 95),
            "p99": percentile(latencies, 99),
        })  # fmt: skip
    return out
