"""``orq request``, ``orq emit`` and ``orq subscribe`` as a user runs them: real processes."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import uuid

import pytest

from orquestrador.brokers import connect
from tests.conftest import broker_url_for
from tests.test_cli import orq
from tests.workers import ROOT, start_worker


@pytest.mark.nats
def test_request_prints_the_result_or_says_why_not(nats_url: str) -> None:
    suffix = uuid.uuid4().hex[:8]
    timed_out = orq(
        "request", "coleta", f"eco_{suffix}", '{"k": 1}', "--timeout", "0.5", "--broker", nats_url
    )
    assert timed_out.returncode == 3, timed_out.stderr
    assert "may still finish" in timed_out.stderr and "Traceback" not in timed_out.stderr
    worker = start_worker(nats_url, "eco", suffix)
    try:
        ok = orq("request", "coleta", f"eco_{suffix}", '{"k": "v"}', "--timeout", "30", "--broker", nats_url)
        recusa = start_worker(nats_url, "recusa", suffix)
        try:
            failed = orq("request", "coleta", f"recusa_{suffix}", "{}", "--broker", nats_url)
        finally:
            recusa.stop()
    finally:
        worker.stop()
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["eco"] == {"k": "v"}
    assert failed.returncode == 1, failed.stderr
    assert "refused on purpose" in failed.stderr
    assert json.loads(failed.stdout)["erro"]["mensagem"] == "refused on purpose"


def test_request_refuses_bad_input_with_exit_2() -> None:
    bad = orq("request", "coleta", "eco", "{nope", "--broker", "memory://")
    assert bad.returncode == 2 and "not valid JSON" in bad.stderr
    kind = orq("request", "colecta", "eco", "{}", "--broker", "memory://")
    assert kind.returncode == 2


def _subscriber(url: str, *args: str) -> subprocess.Popen[str]:
    exe = shutil.which("orq")
    command = [exe] if exe else [sys.executable, "-m", "orquestrador.cli"]
    proc = subprocess.Popen(
        [*command, "subscribe", *args, "--broker", url], cwd=ROOT, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    line = proc.stderr.readline()  # "subscribed to …": from here on nothing is missed
    assert line.startswith("subscribed to"), line + proc.stderr.read()
    return proc


@pytest.mark.parametrize("name", [pytest.param(n, marks=getattr(pytest.mark, n)) for n in ("nats", "redis")])
def test_emit_and_subscribe(name: str, request: pytest.FixtureRequest) -> None:
    url = broker_url_for(name, request)
    prefix = f"t{uuid.uuid4().hex[:8]}"
    as_json = _subscriber(url, f"{prefix}.*", "--json", "--limit", "2")
    shown = _subscriber(url, f"{prefix}.>", "--limit", "3")
    try:
        first = orq(
            "emit", f"{prefix}.a", '{"x": 1}', "-H", "k=v", "--correlation-id", "c-1", "--broker", url
        )
        assert first.returncode == 0, first.stderr
        assert orq("emit", f"{prefix}.a.b", "2", "--broker", url).returncode == 0  # not for '*'
        assert orq("emit", f"{prefix}.c", '"\\u001b[31mred"', "--broker", url).returncode == 0
        out, _ = as_json.communicate(timeout=60)
        text, _ = shown.communicate(timeout=60)
    finally:
        for proc in (as_json, shown):
            proc.kill()
    lines = [json.loads(line) for line in out.splitlines()]
    assert [m["topico"] for m in lines] == [f"{prefix}.a", f"{prefix}.c"]
    assert lines[0]["dados"] == {"x": 1} and lines[0]["headers"] == {"k": "v"}
    assert lines[0]["correlation_id"] == "c-1" and lines[0]["message_id"] == first.stdout.strip()
    assert as_json.returncode == 0
    rows = text.splitlines()
    assert len(rows) == 3 and f"{prefix}.a.b 2" in rows[1] and "[c-1]" in rows[0]
    assert "\x1b" not in text and "\\x1b[31mred" in rows[2]  # escaped, never a terminal sequence


def test_emit_refuses_bad_input_with_exit_2() -> None:
    bad = orq("emit", "a.b", "{nope", "--broker", "memory://")
    assert bad.returncode == 2 and "not valid JSON" in bad.stderr
    wild = orq("emit", "a.*", "1", "--broker", "memory://")
    assert wild.returncode == 2 and "wildcards" in wild.stderr
    pattern = orq("subscribe", "a.#", "--broker", "memory://")
    assert pattern.returncode == 2 and "bad pattern" in pattern.stderr


@pytest.mark.nats
def test_a_durable_subscriber_catches_up_and_ctrl_c_ends_it_cleanly(nats_url: str) -> None:
    import signal

    prefix, name = f"t{uuid.uuid4().hex[:8]}", f"d{uuid.uuid4().hex[:8]}"
    first = _subscriber(nats_url, f"{prefix}.*", "--durable", name, "--json")
    assert orq("emit", f"{prefix}.a", "1", "--broker", nats_url).returncode == 0
    assert first.stdout is not None and json.loads(first.stdout.readline())["dados"] == 1
    first.send_signal(signal.SIGINT)  # as Ctrl-C in a terminal
    _, err = first.communicate(timeout=30)
    assert first.returncode == 130 and "Traceback" not in err, err
    for n in (2, 3):  # published while it is away
        assert orq("emit", f"{prefix}.a", str(n), "--broker", nats_url).returncode == 0
    again = _subscriber(nats_url, f"{prefix}.*", "--durable", name, "--json", "--limit", "2")
    try:
        out, err = again.communicate(timeout=60)
    finally:
        asyncio.run(_delete_subscription(nats_url, name))  # the shared server stays as found
    assert again.returncode == 0, err
    assert [json.loads(line)["dados"] for line in out.splitlines()] == [2, 3]


async def _delete_subscription(url: str, name: str) -> None:
    broker = await connect(url)
    try:
        await broker.delete_subscription(name)
    finally:
        await broker.close()
