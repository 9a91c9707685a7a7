"""Job statistics: per-alvo counts, throughput and latency percentiles, and the live rate.

One function for ``orq stats`` and ``Orquestrador.metricas()``, so both give the same p95 on
the same jobs; one rate for the dashboard and a batch's widget. Plain Python (no pandas):
``orq stats`` stays quick to start.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
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


WINDOW = 10.0  # seconds of finished jobs the current rate is measured over


@dataclass(frozen=True)
class Throughput:
    """Jobs per second and the ETA it implies; ``average`` once nothing is left to do."""

    per_second: float
    eta: float | None  # seconds; None while nothing has finished to measure by
    average: bool = False

    def html(self) -> str:
        """As the widgets show it (plain text: nothing in it needs escaping)."""
        if self.average:
            return f"avg {self.per_second:.1f} jobs/s"
        return f"{self.per_second:.1f} jobs/s · ETA {fmt_seconds(self.eta)}"


def throughput(
    first: float | None, last: float | None, recent: int, finished: int, remaining: int, now: float
) -> Throughput:
    """The rate of a set of jobs from their finish times (see ``Store.finish_times``).

    Why from finish times, not from samples of each widget: the dashboard and a batch's widget
    then compute the same number from the same times (the workers' clocks), whenever each
    redraws. While jobs remain it is the rate of the last ``WINDOW`` seconds (or since the first
    launch, if more recent); once none remain it is the average from first launch to last finish.
    """
    if first is None:
        return Throughput(0.0, None)
    if remaining <= 0:
        span = (last or first) - first
        return Throughput(finished / span if span > 0 else 0.0, 0.0, average=True)
    span = now - max(first, now - WINDOW)
    rate = recent / span if span > 0 else 0.0
    return Throughput(rate, remaining / rate if rate > 0 else None)


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min {seconds % 60:02.0f} s"
    return f"{seconds // 3600:.0f} h {seconds % 3600 // 60:02.0f} min"
