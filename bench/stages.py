"""Each stage of the toolkit's round trip alone, for measuring a change to one of them.

``python -m bench.stages --broker redis --n 10000``

The round trip mixes three processes on two cores, so a change to one stage shows up as noise in
the end-to-end rate. Here each stage runs alone against a full queue and reports its rate and its
CPU time per job (user + system of that process only):
1. launch: ``AsyncOrquestrador.iniciar_lote`` of N jobs, no worker running (store + publish);
2. worker: an ``orq worker`` process started on the N waiting jobs, until N results wait;
3. collect: an orchestrator started on the N waiting results, until all are recorded.

``--lone N`` instead follows N jobs launched one at a time (each after the previous result is
recorded) through a running worker, and prints the median and p90 of each leg of one job's trip
in ms (wall clocks of the two processes on one machine): the launch's store write and publish,
publish → handler start, handler start → result built, result → the collector's fetch, and the
collector's fetch → recorded.

``--rate R --seconds S`` instead launches jobs with ``iniciar()`` at R per second for S seconds
(the latency scenario of ``python -m bench``) and splits each job's time, from its scheduled
send to its result recorded, into four legs: launch (scheduled → ``iniciar`` returned: store
write, publish, a late producer), to the worker (→ handler start; negative when the worker
started it before the launch returned), handler, and to record (handler end → recorded). It
prints p50 / p90 / p99 / max of each and the slowest jobs, which is how the tail was found.
Not part of ``python -m bench``; used for the profile findings in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import ROOT, Deadline, cpu_seconds, job_payload
from bench.servers import broker_urls
from orquestrador.brokers import connect
from orquestrador.orchestrator import AsyncOrquestrador


async def _depth(url: str, queue: str) -> int:
    broker = await connect(url)
    try:
        stats = await broker.stats(queue)
        return stats.depth + stats.in_flight
    finally:
        await broker.close()


async def launch(url: str, alvo: str, results: str, home: Path, n: int) -> dict[str, Any]:
    orq = AsyncOrquestrador(url, responder_para=results, home=home)
    await orq.start()
    try:
        cpu0, t0 = cpu_seconds() or 0.0, time.perf_counter()
        await orq.iniciar_lote("iniciar_coleta", alvo, (job_payload(i) for i in range(n)))
        seconds, cpu = time.perf_counter() - t0, (cpu_seconds() or 0.0) - cpu0
    finally:
        await orq.close()
    return {"rate": n / seconds, "cpu_ms_per_job": cpu / n * 1000}


def work(url: str, alvo: str, results: str, n: int, concurrency: int, timeout: float) -> dict[str, Any]:
    env = dict(os.environ, ORQ_BENCH_PLUGIN=alvo, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "orquestrador.cli", "worker", "escavador", alvo, "--module", "bench.plugins",
           "--broker", url, "--concurrency", str(concurrency), "--log-level", "WARNING"]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = Deadline(timeout)
        done = 0
        while not deadline.passed and proc.poll() is None:
            done = asyncio.run(_depth(url, results))
            if done >= n:
                break
            time.sleep(0.05)
        seconds, cpu = time.perf_counter() - t0, cpu_seconds(proc.pid) or 0.0
    finally:
        proc.terminate()
        proc.wait(20)
    # Start-up (imports, connect) is inside both numbers; it is small next to N jobs.
    return {"rate": done / seconds, "cpu_ms_per_job": cpu / max(1, done) * 1000, "done": done}


async def collect(url: str, results: str, home: Path, n: int, timeout: float) -> dict[str, Any]:
    finished = 0
    all_done = asyncio.Event()

    def on_finished(ids: list[str]) -> None:
        nonlocal finished
        finished += len(ids)
        if finished >= n:
            all_done.set()

    cpu0, t0 = cpu_seconds() or 0.0, time.perf_counter()
    orq = AsyncOrquestrador(url, responder_para=results, home=home)
    orq.listeners.append(on_finished)
    await orq.start()
    try:
        await asyncio.wait_for(all_done.wait(), timeout)
        seconds, cpu = time.perf_counter() - t0, (cpu_seconds() or 0.0) - cpu0
    finally:
        await orq.close()
    return {"rate": n / seconds, "cpu_ms_per_job": cpu / n * 1000}


async def lone(url: str, alvo: str, results: str, home: Path, n: int) -> dict[str, list[float]]:
    """The legs of N lone jobs' trips (seconds each); a worker must be serving ``alvo``."""
    orq = AsyncOrquestrador(url, responder_para=results, home=home)
    recorded: dict[str, float] = {}
    arrived: dict[str, tuple[float, dict[str, Any]]] = {}
    stored_at: list[float] = []
    orq.listeners.append(lambda ids: recorded.update(dict.fromkeys(ids, time.time())))
    record_sent, record = orq.store.record_sent, orq._record

    def timed_record_sent(*a: Any, **k: Any) -> Any:
        out = record_sent(*a, **k)
        stored_at.append(time.time())
        return out

    async def timed_record(batch: list[Any]) -> None:
        now = time.time()
        for d in batch:
            body = json.loads(d.body)
            arrived[body["causation_id"]] = (now, body)
        await record(batch)

    orq.store.record_sent = timed_record_sent  # type: ignore[method-assign]
    orq._record = timed_record  # type: ignore[method-assign]
    await orq.start()
    legs: dict[str, list[float]] = {k: [] for k in LEGS}
    try:
        for i in range(-20, n):  # 20 warm-up jobs
            t0 = time.time()
            env = await orq.iniciar("iniciar_coleta", alvo, job_payload(i))
            published = time.time()
            await orq.esperar(env.message_id or "", timeout=30)
            while env.message_id not in recorded:  # a result stored before esperar() looked
                await asyncio.sleep(0.001)
            await asyncio.sleep(0.02)
            if i < 0:
                continue
            got, body = arrived[env.message_id or ""]
            started = datetime.fromisoformat(body["iniciado_em"]).timestamp()
            built = datetime.fromisoformat(body["timestamp"]).timestamp()
            for leg, value in zip(LEGS, (stored_at[-1] - t0, published - stored_at[-1], started - published,
                                         built - started, got - built, recorded[env.message_id or ""] - got,
                                         recorded[env.message_id or ""] - t0), strict=True):  # fmt: skip
                legs[leg].append(value)
    finally:
        await orq.close()
    return legs


LEGS = ("store write", "publish", "to handler", "handler+build", "to collector", "record", "total")
RATE_LEGS = ("launch", "to worker", "handler", "to record", "total")


async def at_rate(
    url: str, alvo: str, results: str, home: Path, rate: float, seconds: float
) -> list[dict[str, float]]:
    """Per job launched at ``rate``: its legs in ms (see the module) and its scheduled offset."""
    orq = AsyncOrquestrador(url, responder_para=results, home=home)
    done: dict[str, float] = {}
    orq.listeners.append(lambda ids: done.update(dict.fromkeys(ids, time.perf_counter())))
    await orq.start()
    wall = time.time() - time.perf_counter()  # the store's times are wall clock
    sched: dict[str, float] = {}
    sent: dict[str, float] = {}
    try:
        for i in range(20):  # warm-up: connections, declares, the worker's first fetch
            env = await orq.iniciar("iniciar_coleta", alvo, job_payload(-1 - i))
            await orq.esperar(env.message_id or "", timeout=30)

        async def one(at: float, seq: int) -> None:
            env = await orq.iniciar("iniciar_coleta", alvo, job_payload(seq))
            sched[env.message_id or ""], sent[env.message_id or ""] = at, time.perf_counter()

        start, tasks = time.perf_counter() + 0.05, []
        for i in range(int(rate * seconds)):
            at = start + i / rate
            if (delay := at - time.perf_counter()) > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(at, i)))
        await asyncio.gather(*tasks)
        deadline = Deadline(60)
        while not deadline.passed and any(k not in done for k in sched):
            await asyncio.sleep(0.01)
        jobs = []
        for mid, at in sched.items():
            row = orq.store.job(mid)
            if row is None or mid not in done or row.iniciado_em is None or row.concluido_em is None:
                continue
            began, ended = row.iniciado_em - wall, row.concluido_em - wall
            legs = (sent[mid] - at, began - sent[mid], ended - began, done[mid] - ended, done[mid] - at)
            ms = {leg: value * 1000 for leg, value in zip(RATE_LEGS, legs, strict=True)}
            jobs.append({"at": (at - start) * 1000, **ms})
        return jobs
    finally:
        await orq.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.stages")
    parser.add_argument("--broker", choices=["nats", "redis", "rabbitmq", "kafka"], required=True)
    parser.add_argument("--url", default=None, help="default: a server started for this run")
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--lone", type=int, default=0, help="follow N lone jobs instead (see above)")
    parser.add_argument("--rate", type=float, default=0.0, help="split jobs launched at this rate into legs")
    parser.add_argument("--seconds", type=float, default=5.0, help="with --rate: for how long")
    args = parser.parse_args()
    work_dir = Path(tempfile.mkdtemp(prefix="orq-stages-"))
    with broker_urls([args.broker], {args.broker: args.url}, work_dir) as urls:
        measure(args, urls[args.broker], work_dir)
    shutil.rmtree(work_dir, ignore_errors=True)


def measure(args: argparse.Namespace, url: str, work_dir: Path) -> None:
    run = uuid.uuid4().hex[:8]
    alvo, results = f"stage{run}", f"stage_res_{run}"
    if args.lone or args.rate:
        measure_lone(args, url, alvo, results, work_dir)
        return
    try:
        out = {"launch": asyncio.run(launch(url, alvo, results, work_dir / "orq", args.n))}
        out["worker"] = work(url, alvo, results, args.n, args.concurrency, args.timeout)
        out["collect"] = asyncio.run(collect(url, results, work_dir / "orq", args.n, args.timeout))
        for stage, r in out.items():
            print(f"{args.broker:8} {stage:8} {r['rate']:8,.0f} jobs/s  {r['cpu_ms_per_job']:.3f} ms CPU/job")
    finally:

        async def cleanup() -> None:
            broker = await connect(url)
            for queue in (f"escavador_{alvo}", results):
                await broker.delete(queue)
            await broker.close()

        asyncio.run(cleanup())


def measure_lone(args: argparse.Namespace, url: str, alvo: str, results: str, work_dir: Path) -> None:
    env = dict(os.environ, ORQ_BENCH_PLUGIN=alvo, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "orquestrador.cli", "worker", "escavador", alvo, "--module", "bench.plugins",
           "--broker", url, "--concurrency", str(args.concurrency), "--log-level", "WARNING"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if args.rate:
            jobs = asyncio.run(at_rate(url, alvo, results, work_dir / "orq", args.rate, args.seconds))
        else:
            legs = asyncio.run(lone(url, alvo, results, work_dir / "orq", args.lone))
    finally:
        proc.terminate()
        proc.wait(20)
    if args.rate:
        print_rate_legs(args.broker, jobs)
        return
    for leg, values in legs.items():
        ms = sorted(v * 1000 for v in values)
        print(f"{args.broker:8} {leg:14} p50 {ms[len(ms) // 2]:7.2f} ms  p90 {ms[len(ms) * 9 // 10]:7.2f} ms")


def print_rate_legs(broker: str, jobs: list[dict[str, float]]) -> None:
    def pct(values: list[float], q: int) -> float:
        return values[min(len(values) - 1, len(values) * q // 100)]

    print(f"{len(jobs)} jobs recorded")
    for leg in RATE_LEGS:
        ms = sorted(job[leg] for job in jobs)
        print(f"{broker:8} {leg:10} p50 {pct(ms, 50):7.2f}  p90 {pct(ms, 90):7.2f}  p99 {pct(ms, 99):7.2f}  "
              f"max {ms[-1]:7.2f} ms")  # fmt: skip
    for job in sorted(jobs, key=lambda j: -j["total"])[:5]:
        legs = "  ".join(f"{leg} {job[leg]:6.1f}" for leg in RATE_LEGS)
        print(f"slowest: sent at +{job['at']:7.1f} ms: {legs}")


if __name__ == "__main__":
    main()
