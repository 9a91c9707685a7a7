"""The markdown table of ``python -m bench``: one row per broker and measure, with a verdict.

A target that is missed says so (**MISSED**); a toolkit run that failed where the raw client's
completed counts as 0x in the round-trip ratio. The baseline column is the raw client, except on
the rows named after a peer framework (FastStream), where it is that peer on the same broker.
"""

from __future__ import annotations

from typing import Any

RT_TARGET = {"nats": 0.5, "redis": 0.5, "rabbitmq": 0.8, "bullmq": 0.5, "kafka": 0.5}
EMULATED = {"sqs"}  # measured on an emulator (moto): its numbers are moto's, so no target applies
PUBLISH_TARGET = 0.7
LATENCY_TARGET = 2.0
WORKER_RSS_TARGET = 45.0
ORCH_GROWTH_TARGET = 50.0
RESULTADOS_TARGET = 3.0
PEER_NAMES = {"faststream": "FastStream"}  # the target: ahead of each on round trip and p50


def _num(value: Any, fmt: str = "{:,.0f}") -> str:
    return "—" if value is None else fmt.format(value)


def _cell(step: dict[str, Any] | None, key: str, fmt: str = "{:,.0f}") -> str:
    if not step:
        return "—"
    if "unavailable" in step:
        return str(step["unavailable"])
    if "error" in step:
        text = step["error"].replace("|", "/")
        return "error: " + (text if len(text) <= 100 else "…" + text[-100:])
    if "skipped" in step:
        return "skipped: " + step["skipped"]
    if step.get("complete") is False:
        return f"{_num(step.get(key), fmt)} (incomplete: {step.get('finished')}/{step.get('n')})"
    return _num(step.get(key), fmt)


def _ratio(a: dict[str, Any] | None, b: dict[str, Any] | None, key: str) -> float | None:
    try:
        if a and b and a.get("complete", True) and b.get("complete", True):
            return float(a[key]) / float(b[key])
    except (KeyError, TypeError, ZeroDivisionError):
        pass
    return None


def _verdict(ok: bool | None) -> str:
    return "—" if ok is None else ("ok" if ok else "**MISSED**")


def _row(*cells: str) -> str:
    return "| " + " | ".join(cells) + " |"


def table(report: dict[str, Any]) -> tuple[str, tuple[float, str] | None]:
    lines = [
        _row("broker", "measure", "toolkit", "baseline", "toolkit / baseline", "target", "verdict"),
        _row(*["---"] * 7),
    ]
    worst: tuple[float, str] | None = None
    n, rate = report["settings"]["n"], report["settings"]["rate"]
    for broker, r in report["brokers"].items():
        if "unavailable" in r and "raw_roundtrip" not in r:
            lines.append(_row(broker, "all", r["unavailable"], "—", "—", "—", "—"))
            continue
        tk = r.get("unavailable", "")
        rt = _ratio(r.get("toolkit_roundtrip"), r.get("raw_roundtrip"), "rate")
        if (
            rt is None
            and "error" in (r.get("toolkit_roundtrip") or {})
            and "rate" in (r.get("raw_roundtrip") or {})
        ):
            rt = 0.0  # the toolkit's run failed where the raw client's completed: count it as 0x
        emulated = broker in EMULATED

        def goal(text: str, ok: bool | None, emulated: bool = emulated) -> tuple[str, str]:
            return ("none (emulator)", "—") if emulated else (text, _verdict(ok))

        if rt is not None and not emulated and (worst is None or rt < worst[0]):
            worst = (rt, broker)
        target = RT_TARGET.get(broker, 0.0)
        lines.append(_row(
            broker, f"round trip, {n:,} jobs (msg/s)", tk or _cell(r.get("toolkit_roundtrip"), "rate"),
            _cell(r.get("raw_roundtrip"), "rate"), _num(rt, "{:.2f}x"),
            *goal(f">= {target}x", None if rt is None else rt >= target),
        ))  # fmt: skip
        pub = _ratio(r.get("toolkit_publish"), r.get("raw_publish"), "rate")
        lines.append(_row(
            broker, "publish-only, batch launch (msg/s)", tk or _cell(r.get("toolkit_publish"), "rate"),
            _cell(r.get("raw_publish"), "rate"), _num(pub, "{:.2f}x"),
            *goal(f">= {PUBLISH_TARGET}x", None if pub is None else pub >= PUBLISH_TARGET),
        ))  # fmt: skip
        tl, rl = r.get("toolkit_latency") or {}, r.get("raw_latency") or {}
        p99 = _ratio(tl, rl, "p99_ms") if tl.get("p99_ms") and rl.get("p99_ms") else None
        lines.append(_row(
            broker, f"latency p50 / p99 at {rate:.0f} msg/s (ms)", tk or _lat(tl), _lat(rl),
            f"p99 {_num(p99, '{:.1f}x')}",
            *goal(f"p99 <= {LATENCY_TARGET:.0f}x raw", None if p99 is None else p99 <= LATENCY_TARGET),
        ))  # fmt: skip
        tk_cpu = _per_job(r.get("toolkit_worker_cpu_seconds"), r.get("toolkit_roundtrip"))
        raw_cpu = _per_job(r.get("raw_worker_cpu_seconds"), r.get("raw_roundtrip"))
        lines.append(_row(
            broker, "round-trip CPU per job, worker + orchestrator (ms)", tk or _pair(tk_cpu), _pair(raw_cpu),
            _num(_div(tk_cpu, raw_cpu), "{:.1f}x"), "—", "—",
        ))  # fmt: skip
        peak = (r.get("toolkit_worker_memory") or {}).get("VmHWM")
        raw_peak = (r.get("raw_worker_memory") or {}).get("VmHWM")
        lines.append(_row(
            broker, "worker peak RSS (MiB)", tk or _num(peak, "{:.1f}"), _num(raw_peak, "{:.1f}"), "—",
            f"<= {WORKER_RSS_TARGET:.0f} MiB", _verdict(None if peak is None else peak <= WORKER_RSS_TARGET),
        ))  # fmt: skip
        for peer in report["settings"].get("peers", []):
            lines.extend(_peer_rows(broker, r, peer, rate, tk))
    mem = report.get("memory") or {}
    if "growth_mib" in mem:
        growth = mem["growth_mib"]
        what = (
            f"orchestrator RSS growth over {mem.get('n', 0):,} jobs (MiB; {mem.get('mode')}; "
            f"peak +{mem.get('peak_growth_mib', 0):.0f})"
        )
        ok = growth < ORCH_GROWTH_TARGET and mem.get("complete", True)
        lines.append(_row(
            str(mem.get("broker")), what, f"{growth:.1f}", "—", "—",
            f"< {ORCH_GROWTH_TARGET:.0f} MiB", _verdict(ok),
        ))  # fmt: skip
    elif mem:
        why = mem.get("error") or mem.get("skipped") or "not run"
        lines.append(_row("—", "orchestrator RSS growth", why[:120], "—", "—", "< 50 MiB", "—"))
    res = report.get("resultados") or {}
    if "seconds" in res:
        rows, cols = res["shape"]
        what = f"resultados() over {res['rows']:,} results (s; DataFrame {rows:,} x {cols})"
        lines.append(_row(
            "store", what, f"{res['seconds']:.2f}", "—", "—", f"< {RESULTADOS_TARGET:.0f} s",
            _verdict(res["seconds"] < RESULTADOS_TARGET),
        ))  # fmt: skip
    elif res:
        why = res.get("error") or res.get("skipped") or "not run"
        lines.append(_row("store", "resultados()", why[:120], "—", "—", "< 3 s", "—"))
    return "\n".join(lines), worst


def _peer_rows(broker: str, r: dict[str, Any], peer: str, rate: float, tk: str) -> list[str]:
    """Round trip and latency against ``peer`` on this broker: the toolkit must be ahead on both."""
    name = PEER_NAMES.get(peer, peer)
    trt, prt = r.get("toolkit_roundtrip"), r.get(f"{peer}_roundtrip")
    rt = _ratio(trt, prt, "rate")
    tl, pl = r.get("toolkit_latency") or {}, r.get(f"{peer}_latency") or {}
    p50 = _ratio(tl, pl, "p50_ms") if tl.get("p50_ms") and pl.get("p50_ms") else None
    return [
        _row(
            broker, f"{name} round trip (msg/s)", tk or _cell(trt, "rate"), _cell(prt, "rate"),
            _num(rt, "{:.2f}x"), "> 1x (ahead)", _verdict(None if rt is None else rt > 1),
        ),
        _row(
            broker, f"{name} latency p50 / p99 at {rate:.0f} msg/s (ms)", tk or _lat(tl), _lat(pl),
            f"p50 {_num(p50, '{:.2f}x')}", "p50 < 1x (ahead)", _verdict(None if p50 is None else p50 < 1),
        ),
    ]  # fmt: skip


def _per_job(worker_cpu: float | None, step: dict[str, Any] | None) -> tuple[float, float] | None:
    """(worker, producer/orchestrator) CPU milliseconds per job of a complete round trip."""
    if not step or not step.get("complete") or worker_cpu is None or step.get("cpu_seconds") is None:
        return None
    n = step["n"]
    return worker_cpu / n * 1000, step["cpu_seconds"] / n * 1000


def _pair(cpu: tuple[float, float] | None) -> str:
    return "—" if cpu is None else f"{cpu[0]:.2f} + {cpu[1]:.2f}"


def _div(a: tuple[float, float] | None, b: tuple[float, float] | None) -> float | None:
    return None if a is None or b is None or sum(b) <= 0 else sum(a) / sum(b)


def _lat(step: dict[str, Any]) -> str:
    if not step:
        return "—"
    if "error" in step or "skipped" in step or "unavailable" in step:
        return _cell(step, "p50_ms")
    text = f"{_num(step.get('p50_ms'), '{:.1f}')} / {_num(step.get('p99_ms'), '{:.1f}')}"
    if step.get("received") != step.get("sent"):
        text += f" ({step.get('received')}/{step.get('sent')} back)"
    return text
