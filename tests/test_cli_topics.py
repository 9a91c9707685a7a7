"""``orq request``, ``orq emit`` and ``orq subscribe`` as a user runs them: real processes."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.test_cli import orq
from tests.workers import start_worker


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
