"""``python -m bench``: every scenario, per broker, in one run; a markdown table at the end.

Per broker (nats, redis, rabbitmq, bullmq, kafka), in this order, each step a separate process:
1. toolkit round trip: an ``orq worker escavador`` process + ``bench.toolkit roundtrip``;
   then, with the same worker, ``bench.toolkit latency`` (fixed rate); the worker's peak RSS.
2. toolkit publish-only (no worker).
3. the raw baseline: ``bench.raw_<broker> worker`` + ``producer`` roundtrip / latency / publish.
4. each peer (``--peers``, default ``faststream``): ``bench.peer_<peer> worker`` + ``producer``
   roundtrip / latency, the same scenarios as the raw baseline written with that framework
   (bench/peer_faststream.py); a peer that is not installed gets a row saying so.
Then the orchestrator's RSS over ``--mem-jobs`` jobs on the fastest broker (the notebook path:
``iniciar_coletas`` + ``Lote.wait``; if the time budget cannot fit it, the collecting side is
simulated through the store path instead, and the table says so), and ``resultados()`` over
``--rows`` stored results. Every queue is unique to the run and deleted at the end.

Brokers: ``--nats-url`` / ``--redis-url`` / ``--rabbitmq-url`` / ``--bullmq-url`` / ``--kafka-url``
measure existing servers; without them the run starts its own (bench/servers.py: the embedded
nats-server, a redis-server, a RabbitMQ node, a one-node KRaft Kafka, on free loopback ports) and
stops them at the end. ``--brokers sqs`` (not in the default set) measures SQS at ``--sqs-url``,
or moto started for the run: an emulator, whose numbers say how fast moto answers, not SQS, so
no ratio to the others is meant.

The scraping row (the ``http`` escavador against Scrapy on a local site) is its own run:
``python -m bench.scraping``.

``--profile DIR`` also records py-spy profiles (raw collapsed stacks) of the toolkit's worker
and orchestrator during the round trip, summarised by ``python -m bench.profsum``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import READY_LINE, ROOT, cpu_seconds, loadavg, machine_info, parse_result, proc_memory
from bench.report import table
from bench.servers import ServerUnavailable, broker_urls

BROKERS = ("nats", "redis", "rabbitmq", "bullmq", "kafka")
PEERS = ("faststream",)  # each is bench/peer_<name>.py over the import package of the same name
PEER_MISSING = "not installed (pip install -e '.[bench]')"
PEER_BROKERS = {"faststream": ("nats", "redis", "rabbitmq")}  # FastStream has no BullMQ broker; Kafka not yet
BUDGET = 570.0  # seconds for the toolkit, the raw clients, the RSS scenario and resultados()
PEER_SECONDS = 50.0  # added to the default budget per peer and broker, so a peer displaces nothing
# Measured when asked for (--brokers sqs): on moto, an emulator, the numbers are the emulator's.
ON_REQUEST = ("sqs",)


@dataclass
class Settings:
    brokers: list[str]
    n: int
    concurrency: int
    rate: float
    latency_seconds: float
    mem_jobs: int
    rows: int
    budget: float
    urls: dict[str, str | None]
    profile: Path | None
    peers: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    @property
    def left(self) -> float:
        return self.budget - (time.monotonic() - self.started)


class Skip(Exception):
    """A step that cannot run (no adapter, no server, no time left): its cells say why."""


# -- processes -------------------------------------------------------------------------------


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("ORQ_BROKER_URL", None)
    env.update(extra or {})
    return env


def run_json(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run one scenario process; its BENCH_RESULT line, or a Skip saying what went wrong."""
    try:
        proc = subprocess.run(
            cmd, cwd=ROOT, env=_env(env), capture_output=True, text=True, timeout=max(5.0, timeout)
        )
    except subprocess.TimeoutExpired:
        raise Skip(f"timed out after {timeout:.0f}s") from None
    result = parse_result(proc.stdout)
    if result is None:
        lines = (proc.stderr or proc.stdout).strip().splitlines() or ["no output"]
        raise Skip(f"exit {proc.returncode}: {lines[-1][-300:]}")
    return result


class Background:
    """A worker process whose output goes to a file; ready once a line says so."""

    def __init__(self, cmd: list[str], log: Path, ready: str, env: dict[str, str] | None = None) -> None:
        self.log = log
        self.ready_text = ready
        self._out = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=_env(env), stdout=self._out, stderr=subprocess.STDOUT, text=True
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float = 30.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.ready_text in self.log.read_text():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        tail = " | ".join(self.log.read_text().strip().splitlines()[-3:])
        self.stop()
        raise Skip(f"worker did not start: {tail[-300:]}")

    def memory(self) -> dict[str, float]:
        return proc_memory(self.pid)

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()


class Profiler:
    """py-spy attached to a running process (``--profile``); stopped with SIGINT to write out."""

    def __init__(self, pid: int, out: Path) -> None:
        self.proc = subprocess.Popen(
            ["py-spy", "record", "--pid", str(pid), "--format", "raw", "--rate", "200",
             "--nonblocking", "-o", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# -- brokers ---------------------------------------------------------------------------------


def adapter_problem(broker: str, url: str) -> str | None:
    """Why the toolkit cannot use ``broker`` here, or None."""
    module = {"nats": "nats", "redis": "redis", "rabbitmq": "rabbitmq", "bullmq": "bullmq",
              "sqs": "sqs", "kafka": "kafka"}[broker]  # fmt: skip
    try:
        importlib.import_module(f"orquestrador.brokers.{module}")
    except ModuleNotFoundError:
        return "adapter not available"
    except Exception as exc:  # a half-written module
        return f"adapter not available ({type(exc).__name__}: {exc})"

    async def probe() -> None:
        from orquestrador.brokers import connect

        broker_ = await connect(url)
        await broker_.close()

    try:
        asyncio.run(asyncio.wait_for(probe(), 15))
    except Exception as exc:
        return f"server not reachable ({type(exc).__name__}: {str(exc)[:120]})"
    return None


def delete_queues(url: str, queues: list[str]) -> None:
    async def delete() -> None:
        from orquestrador.brokers import connect

        broker = await connect(url)
        try:
            for queue in queues:
                with contextlib.suppress(Exception):
                    await broker.delete(queue)
        finally:
            await broker.close()

    with contextlib.suppress(Exception):
        asyncio.run(asyncio.wait_for(delete(), 60))


def server_version(broker: str, url: str) -> str:
    try:
        if broker == "nats":
            from orquestrador.brokers.embedded import find_binary

            out = subprocess.run([find_binary(), "--version"], capture_output=True, text=True, timeout=10)
            return out.stdout.strip() or out.stderr.strip()
        if broker in ("redis", "bullmq"):
            import redis

            client = redis.Redis.from_url(url.replace("bullmq://", "redis://", 1))
            try:
                version = "redis " + str(client.info("server")["redis_version"])
            finally:
                client.close()
            if broker == "bullmq":
                version += f", bullmq {importlib.metadata.version('bullmq')}"
            return version
        if broker == "kafka":
            return "Apache Kafka (the run's own is a one-node KRaft 4.1)"
        import pika

        conn = pika.BlockingConnection(pika.URLParameters(url))
        try:
            props = conn._impl.server_properties  # what the server said in connection.start
            name = props.get("product", b"RabbitMQ")
            version = props.get("version", b"?")
            as_text = [v.decode() if isinstance(v, bytes) else str(v) for v in (name, version)]
            return " ".join(as_text)
        finally:
            conn.close()
    except Exception as exc:
        return f"unknown ({type(exc).__name__})"


# -- one broker ------------------------------------------------------------------------------


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _py(*args: str) -> list[str]:
    return [sys.executable, "-m", *args]


def _step(out: dict[str, Any], key: str, settings: Settings, need: float, fn: Any) -> Any:
    """Run ``fn`` into ``out[key]`` unless the time budget is short; errors become text."""
    if settings.left < need:
        out[key] = {"skipped": "time budget"}
        return None
    try:
        out[key] = fn()
    except Skip as exc:
        out[key] = {"error": str(exc)}
    return out[key]


@dataclass
class _Names:
    """Every queue one broker's run creates: unique to the run, deleted at its end."""

    run: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    @property
    def alvo(self) -> str:
        return f"bench{self.run}"

    @property
    def pub_alvo(self) -> str:
        return f"benchpub{self.run}"

    def results(self, key: str) -> str:
        return f"bench_res_{key}_{self.run}"

    @property
    def toolkit_queues(self) -> list[str]:
        return [f"escavador_{self.alvo}", f"escavador_{self.pub_alvo}",
                *(self.results(k) for k in ("rt", "lat", "pub"))]  # fmt: skip

    @property
    def raw_queues(self) -> list[str]:
        return [f"bench_raw_{self.run}", f"bench_rawpub_{self.run}", f"bench_rawres_{self.run}"]

    def peer_queues(self, peer: str) -> list[str]:
        return [f"bench_{peer}_{self.run}", f"bench_{peer}res_{self.run}"]


def run_broker(broker: str, settings: Settings, work: Path) -> dict[str, Any]:
    url = settings.urls[broker]
    out: dict[str, Any] = {"server": server_version(broker, url)}
    problem = adapter_problem(broker, url)
    names = _Names()
    try:
        if problem is None:
            _toolkit_steps(broker, url, names, settings, work, out)
        else:
            out["unavailable"] = problem
        _raw_steps(broker, url, names, settings, work, out)
        for peer in settings.peers:
            _peer_steps(peer, broker, url, names, settings, work, out)
    finally:
        if problem is None:
            delete_queues(url, names.toolkit_queues)
        with contextlib.suppress(Skip):
            run_json(_py(f"bench.raw_{broker}", "cleanup", "--url", url, *names.raw_queues), 60)
        for peer in settings.peers:
            if f"{peer}_version" in out:
                with contextlib.suppress(Skip):
                    run_json(_py(f"bench.peer_{peer}", "cleanup", "--url", url, *names.peer_queues(peer)), 60)
    return out


def _timeouts(settings: Settings) -> tuple[float, float]:
    """(round trip / publish, latency) seconds before a scenario process is given up."""
    return max(60.0, settings.n / 100), settings.latency_seconds + 60


def _toolkit_steps(
    broker: str, url: str, names: _Names, settings: Settings, work: Path, out: dict[str, Any]
) -> None:
    rt_timeout, lat_timeout = _timeouts(settings)

    def tk_cmd(mode: str, target: str, key: str, *extra: str) -> list[str]:
        return _py("bench.toolkit", mode, "--url", url, "--alvo", target, "--results", names.results(key),
                   "--home", str(work / f"{key}-{broker}"), *extra)  # fmt: skip

    worker_cmd = _py(
        "orquestrador.cli", "worker", "escavador", names.alvo, "--module", "bench.plugins",
        "--broker", url, "--concurrency", str(settings.concurrency),
    )  # fmt: skip
    worker = Background(
        worker_cmd, work / f"worker-{broker}.log", "serving ", {"ORQ_BENCH_PLUGIN": names.alvo}
    )
    try:
        worker.wait_ready()
        orch_cmd = tk_cmd("roundtrip", names.alvo, "rt", "--n", str(settings.n), "--timeout", str(rt_timeout))
        profiler = None
        if settings.profile is not None:
            profiler = Profiler(worker.pid, settings.profile / f"worker-{broker}.txt")
            spy_out = settings.profile / f"orchestrator-{broker}.txt"
            orch_cmd = [
                "py-spy",
                "record",
                "--format",
                "raw",
                "--rate",
                "200",
                "-o",
                str(spy_out),
                "--",
                *orch_cmd,
            ]
            time.sleep(1.0)
        cpu0 = cpu_seconds(worker.pid)
        try:
            _step(out, "toolkit_roundtrip", settings, 30, lambda: run_json(orch_cmd, rt_timeout + 60))
            out["toolkit_worker_cpu_seconds"] = _minus(cpu_seconds(worker.pid), cpu0)
        finally:
            if profiler is not None:
                profiler.stop()
        lat_cmd = tk_cmd("latency", names.alvo, "lat", "--rate", str(settings.rate),
                         "--seconds", str(settings.latency_seconds), "--timeout", "30")  # fmt: skip
        _step(out, "toolkit_latency", settings, 20, lambda: run_json(lat_cmd, lat_timeout))
        out["toolkit_worker_memory"] = worker.memory()
    except Skip as exc:
        out["toolkit_roundtrip"] = {"error": str(exc)}
    finally:
        worker.stop()
    pub_cmd = tk_cmd("publish", names.pub_alvo, "pub", "--n", str(settings.n))
    _step(out, "toolkit_publish", settings, 20, lambda: run_json(pub_cmd, rt_timeout))


def _raw_steps(
    broker: str, url: str, names: _Names, settings: Settings, work: Path, out: dict[str, Any]
) -> None:
    rt_timeout, _ = _timeouts(settings)
    raw = f"bench.raw_{broker}"
    queue, pub_queue, results = names.raw_queues
    _baseline_steps(raw, "raw", broker, url, (queue, results), settings, work, out)
    _step(out, "raw_publish", settings, 10, lambda: run_json(
        _py(raw, "producer", "--url", url, "--queue", pub_queue, "--results", results,
            "--mode", "publish", "--n", str(settings.n)), rt_timeout))  # fmt: skip


def _peer_steps(
    peer: str, broker: str, url: str, names: _Names, settings: Settings, work: Path, out: dict[str, Any]
) -> None:
    """A peer framework's round trip and latency on this broker, or why it cannot run."""
    if broker not in PEER_BROKERS.get(peer, BROKERS):
        out[f"{peer}_roundtrip"] = out[f"{peer}_latency"] = {"unavailable": f"{peer} has no {broker} broker"}
        return
    if importlib.util.find_spec(peer) is None:
        out[f"{peer}_roundtrip"] = out[f"{peer}_latency"] = {"unavailable": PEER_MISSING}
        return
    out[f"{peer}_version"] = importlib.metadata.version(peer)
    queue, results = names.peer_queues(peer)
    _baseline_steps(
        f"bench.peer_{peer}", peer, broker, url, (queue, results), settings, work, out, ("--results", results)
    )


def _baseline_steps(
    module: str, key: str, broker: str, url: str, queues: tuple[str, str], settings: Settings,
    work: Path, out: dict[str, Any], worker_extra: tuple[str, ...] = (),
) -> None:  # fmt: skip
    """``module``'s worker + producer round trip and latency into ``out["<key>_..."]``."""
    rt_timeout, lat_timeout = _timeouts(settings)
    queue, results = queues
    worker = Background(
        _py(module, "worker", "--url", url, "--queue", queue, "--batch", str(settings.concurrency),
            "--max-seconds", str(max(60.0, settings.left)), *worker_extra),
        work / f"{key}worker-{broker}.log", READY_LINE,
    )  # fmt: skip
    producer = [module, "producer", "--url", url, "--queue", queue, "--results", results]
    try:
        worker.wait_ready()
        cpu0 = cpu_seconds(worker.pid)
        _step(out, f"{key}_roundtrip", settings, 15, lambda: run_json(
            _py(*producer, "--mode", "roundtrip", "--n", str(settings.n), "--timeout", str(rt_timeout)),
            rt_timeout + 30))  # fmt: skip
        out[f"{key}_worker_cpu_seconds"] = _minus(cpu_seconds(worker.pid), cpu0)
        _step(out, f"{key}_latency", settings, 15, lambda: run_json(
            _py(*producer, "--mode", "latency", "--rate", str(settings.rate),
                "--seconds", str(settings.latency_seconds), "--timeout", "30"), lat_timeout))  # fmt: skip
        out[f"{key}_worker_memory"] = worker.memory()
    except Skip as exc:
        out[f"{key}_roundtrip"] = {"error": str(exc)}
    finally:
        worker.stop()


# -- memory and resultados ---------------------------------------------------------------------


def run_memory(broker: str, rate: float | None, settings: Settings, work: Path) -> dict[str, Any]:
    """Launch and collect ``mem_jobs`` for real if the budget fits it, else the store path."""
    url = settings.urls[broker]
    jobs = settings.mem_jobs
    reserve = 30 + settings.rows / 10_000  # keep time for resultados() (fill + read)
    expected = jobs / rate * 1.5 + 30 if rate else float("inf")
    home = str(work / f"mem-{broker}")
    if expected > settings.left - reserve:
        cmd = _py("bench.toolkit", "memory-store", "--url", "memory://", "--alvo", "benchmem",
                  "--results", "bench_res_mem", "--home", home, "--n", str(jobs))  # fmt: skip
        result = run_json(cmd, max(60.0, settings.left - reserve))
        return {"broker": broker, "mode": "store path (simulated collecting)", **result}
    run = uuid.uuid4().hex[:8]
    alvo, results = f"benchmem{run}", f"bench_res_mem_{run}"
    worker = Background(
        _py("orquestrador.cli", "worker", "escavador", alvo, "--module", "bench.plugins", "--broker", url,
            "--concurrency", str(settings.concurrency)),
        work / "worker-memory.log", "serving ", {"ORQ_BENCH_PLUGIN": alvo},
    )  # fmt: skip
    try:
        worker.wait_ready()
        wait = max(30.0, settings.left - reserve)
        cmd = _py("bench.toolkit", "memory", "--url", url, "--alvo", alvo, "--results", results,
                  "--home", home, "--n", str(jobs), "--timeout", str(wait))  # fmt: skip
        result = run_json(cmd, max(60.0, settings.left - reserve + 30))
    finally:
        worker.stop()
        delete_queues(url, [f"escavador_{alvo}", results])
    return {"broker": broker, "mode": "launched and collected through the broker", **result}


# -- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> tuple[Settings, argparse.Namespace]:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--brokers", default=",".join(BROKERS), help="comma-separated: " + ",".join(BROKERS + ON_REQUEST)
    )
    parser.add_argument("--n", type=int, default=None, help="round-trip / publish jobs (default 20000)")
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    parser.add_argument("--json", type=Path, default=None, help="also write every number here")
    parser.add_argument("--concurrency", type=int, default=32, help="worker concurrency / raw batch")
    parser.add_argument("--rate", type=float, default=500.0, help="latency scenario rate (msg/s)")
    parser.add_argument("--latency-seconds", type=float, default=None)
    parser.add_argument("--mem-jobs", type=int, default=None, help="jobs of the RSS scenario (100000)")
    parser.add_argument("--rows", type=int, default=None, help="stored results for resultados() (1000000)")
    budget_help = f"seconds for the whole run ({BUDGET:.0f} + {PEER_SECONDS:.0f} per peer and broker)"
    parser.add_argument("--budget", type=float, default=None, help=budget_help)
    parser.add_argument("--nats-url", default=None, help="default: the embedded nats-server, for this run")
    parser.add_argument("--redis-url", default=None, help="default: a redis-server started for this run")
    parser.add_argument("--rabbitmq-url", default=None, help="default: a RabbitMQ node started for this run")
    parser.add_argument("--kafka-url", default=None, help="default: a one-node KRaft for this run")
    parser.add_argument(
        "--sqs-url", default=None, help="sqs://REGION[?endpoint_url=...]; default: moto started for this run"
    )
    parser.add_argument("--bullmq-url", default=None, help="default: a redis-server started for this run")
    parser.add_argument("--profile", type=Path, default=None, help="py-spy profiles into this directory")
    parser.add_argument("--peers", default=",".join(PEERS), help="comma-separated peers: faststream")
    parser.add_argument("--no-peers", dest="peers", action="store_const", const="", help="measure no peer")
    args = parser.parse_args(argv)
    brokers = [b.strip() for b in args.brokers.split(",") if b.strip()]
    unknown = [b for b in brokers if b not in BROKERS + ON_REQUEST]
    if unknown:
        parser.error(f"unknown broker(s) {unknown}: use {', '.join(BROKERS + ON_REQUEST)}")
    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    if unknown := [p for p in peers if p not in PEERS]:
        parser.error(f"unknown peer(s) {unknown}: use {', '.join(PEERS)}")
    quick = args.quick
    settings = Settings(
        brokers=brokers,
        n=args.n or (2_000 if quick else 20_000),
        concurrency=args.concurrency,
        rate=args.rate,
        latency_seconds=args.latency_seconds or (2.0 if quick else 5.0),
        mem_jobs=args.mem_jobs or (5_000 if quick else 100_000),
        rows=args.rows or (50_000 if quick else 1_000_000),
        budget=args.budget or BUDGET + PEER_SECONDS * len(brokers) * len(peers),
        urls={name: getattr(args, f"{name}_url") for name in BROKERS + ON_REQUEST},
        profile=args.profile,
        peers=peers,
    )
    return settings, args


def measure(settings: Settings, report: dict[str, Any], work: Path) -> None:
    """Every scenario, broker by broker, into ``report``."""
    for broker in settings.brokers:
        print(f"[bench] {broker} ...", file=sys.stderr, flush=True)
        report["brokers"][broker] = run_broker(broker, settings, work)
    rates = {b: (r.get("toolkit_roundtrip") or {}).get("rate") for b, r in report["brokers"].items()}
    rates = {b: v for b, v in rates.items() if v}
    if rates:
        fastest = max(rates, key=lambda b: rates[b])
        print(f"[bench] orchestrator memory over {settings.mem_jobs:,} jobs ({fastest}) ...",
              file=sys.stderr, flush=True)  # fmt: skip
        try:
            report["memory"] = run_memory(fastest, rates[fastest], settings, work)
        except Skip as exc:
            report["memory"] = {"error": str(exc)}
    print(f"[bench] resultados() over {settings.rows:,} rows ...", file=sys.stderr, flush=True)
    if settings.left < 20:
        report["resultados"] = {"skipped": "time budget"}
    else:
        try:
            report["resultados"] = run_json(
                _py("bench.resultados", "--rows", str(settings.rows), "--home", str(work / "resultados")),
                max(30.0, settings.left + 60),
            )
        except Skip as exc:
            report["resultados"] = {"error": str(exc)}


def main(argv: list[str] | None = None) -> int:
    settings, args = parse_args(argv)
    if settings.profile is not None:
        if shutil.which("py-spy") is None:
            print("--profile needs py-spy (pip install py-spy)", file=sys.stderr)
            return 2
        settings.profile.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="orq-bench-"))
    report: dict[str, Any] = {"machine": machine_info(), "brokers": {}}
    report["settings"] = {
        "n": settings.n, "concurrency": settings.concurrency, "rate": settings.rate,
        "latency_seconds": settings.latency_seconds, "mem_jobs": settings.mem_jobs, "rows": settings.rows,
        "quick": args.quick, "handler": "async def returning a small dict", "peers": settings.peers,
    }  # fmt: skip
    try:
        with broker_urls(settings.brokers, settings.urls, work) as urls:
            settings.urls = dict(urls)
            measure(settings, report, work)
    except ServerUnavailable as exc:
        print(f"[bench] {exc}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report["machine"]["loadavg_end"] = loadavg()
    report["seconds"] = time.monotonic() - settings.started
    text, worst = table(report)
    print(text)
    print()
    if worst is None:
        print("worst round-trip ratio vs raw: n/a (no broker off an emulator completed both round trips)")
    else:
        print(f"worst round-trip ratio vs raw: {worst[0]:.2f} ({worst[1]})")
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
