"""Launch options (prioridade, atraso/executar_em, ttl/expira_em): checked once, the same for
every entry point, and read from the wire without ever crashing a worker."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from orquestrador import AsyncOrquestrador, Worker, WorkerOptions
from orquestrador import envelope as wire
from orquestrador.brokers import connect
from orquestrador.brokers.base import DLQ_REASON, dlq_of
from orquestrador.brokers.bullmq.jobs import timing_opts
from orquestrador.brokers.support.lanes import lane_of, lanes_of
from orquestrador.errors import ConfigError, EnvelopeError
from orquestrador.job_options import JobOptions
from orquestrador.plugins import Plugin
from orquestrador.worker import gate
from tests.conftest import eventually

NOW = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("value", [-1, 10, 3.0, "9", True, None])
def test_prioridade_is_a_whole_number_from_0_to_9(value: Any) -> None:
    if value is None:
        assert JobOptions.of(prioridade=None).prioridade == 0
        return
    with pytest.raises(ConfigError, match="prioridade must be a whole number from 0 to 9"):
        JobOptions.of(prioridade=value)


def test_bounds_are_accepted() -> None:
    assert JobOptions.of(prioridade=0).empty
    assert JobOptions.of(prioridade=9).fields() == {"prioridade": 9}


def test_relative_options_become_times_from_now() -> None:
    options = JobOptions.of(atraso=30, ttl=90.5, now=NOW)
    assert options.executar_em == NOW + timedelta(seconds=30)
    assert options.expira_em == NOW + timedelta(seconds=90.5)


def test_aware_datetimes_are_kept_as_utc() -> None:
    brt = timezone(timedelta(hours=-3))
    options = JobOptions.of(executar_em=datetime(2026, 1, 2, 10, 0, tzinfo=brt), now=NOW)
    assert options.executar_em == datetime(2026, 1, 2, 13, 0, tzinfo=UTC)


@pytest.mark.parametrize("name", ["executar_em", "expira_em"])
def test_a_naive_datetime_is_refused(name: str) -> None:
    with pytest.raises(ConfigError, match=f"{name} is a naive datetime.*time zone"):
        JobOptions.of(**{name: datetime(2026, 1, 2, 12, 0)}, now=NOW)  # type: ignore[arg-type]


@pytest.mark.parametrize(("relative", "absolute"), [("atraso", "executar_em"), ("ttl", "expira_em")])
def test_relative_and_absolute_together_are_refused(relative: str, absolute: str) -> None:
    with pytest.raises(ConfigError, match=f"either {relative}= .* or {absolute}="):
        JobOptions.of(**{relative: 5, absolute: NOW + timedelta(hours=1)}, now=NOW)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [-1, float("nan"), float("inf"), "5", 10**9])
def test_seconds_must_be_a_sane_number(value: Any) -> None:
    with pytest.raises(ConfigError, match="atraso must be"):
        JobOptions.of(atraso=value, now=NOW)


def test_a_deadline_before_the_start_could_never_run() -> None:
    with pytest.raises(ConfigError, match="not after executar_em"):
        JobOptions.of(atraso=60, ttl=30, now=NOW)
    with pytest.raises(ConfigError, match="not after now"):
        JobOptions.of(expira_em=NOW - timedelta(seconds=1), now=NOW)


def test_options_travel_as_optional_envelope_fields() -> None:
    env = wire.nova("iniciar_coleta", {})
    assert b"prioridade" not in wire.encode(env), "a job without options is as before"
    options = JobOptions.of(prioridade=7, atraso=1, ttl=2, now=NOW)
    back = wire.decode(wire.encode(env.with_changes(**options.fields())))
    assert (back.prioridade, back.executar_em, back.expira_em) == (7, options.executar_em, options.expira_em)


@pytest.mark.parametrize(
    ("field", "value"),
    [("prioridade", 12), ("prioridade", "9"), ("prioridade", True), ("executar_em", "x"), ("expira_em", [5])],
)
def test_invalid_values_from_the_wire_are_envelope_errors(field: str, value: Any) -> None:
    body = json.loads(wire.encode(wire.nova("iniciar_coleta", {})))
    body[field] = value
    with pytest.raises(EnvelopeError, match=field):
        wire.decode(json.dumps(body).encode())


def test_a_naive_time_on_the_wire_is_utc_like_the_timestamp() -> None:
    body = json.loads(wire.encode(wire.nova("iniciar_coleta", {})))
    body["expira_em"] = "2026-01-02T12:00:00"
    assert wire.decode(json.dumps(body).encode()).expira_em == NOW


def test_lanes() -> None:
    assert lane_of("escavador_x", 0) == "escavador_x"
    assert [lane_of("escavador_x", p) for p in (1, 4, 5, 9)] == [
        "escavador_x__p4", "escavador_x__p4", "escavador_x__p9", "escavador_x__p9",
    ]  # fmt: skip
    assert lanes_of("escavador_x") == ["escavador_x__p9", "escavador_x__p4"]


def test_gate() -> None:
    env = wire.nova("iniciar_coleta", {}).with_changes(executar_em=NOW, expira_em=NOW + timedelta(seconds=5))
    at = NOW.timestamp()
    assert gate.early(env, at - 2) == pytest.approx(2)
    assert gate.early(env, at) == 0 and not gate.expired(env, at)
    assert gate.expired(env, at + 5)


def test_bullmq_timing_keeps_our_order_in_bullmqs_scale() -> None:
    now_ms = round(NOW.timestamp() * 1000)
    assert timing_opts({}, now_ms) == {"priority": 10}, "prioridade 0 is prioritized too (else it runs first)"
    assert timing_opts({"prioridade": 9}, now_ms) == {"priority": 1}
    assert timing_opts({"prioridade": 99}, now_ms) == {"priority": 10}, "left to the worker to refuse"
    later = (NOW + timedelta(seconds=3)).isoformat()
    assert timing_opts({"executar_em": later}, now_ms) == {"priority": 10, "delay": 3000}


async def test_the_api_checks_options_before_sending() -> None:
    orq = AsyncOrquestrador(f"memory://{uuid.uuid4().hex}")
    await orq.start()
    try:
        with pytest.raises(ConfigError, match="prioridade"):
            await orq.iniciar("iniciar_coleta", "x", {}, prioridade=10)
        with pytest.raises(ConfigError, match="naive"):
            await orq.lancar_lote("iniciar_coleta", "x", [{}], executar_em=datetime(2030, 1, 1))
        with pytest.raises(TypeError, match="prioridad"):  # a misspelt option is not silently dropped
            await orq.iniciar("iniciar_coleta", "x", {}, prioridad=9)  # type: ignore[call-arg]
        assert not orq.store.count_by_state(), "nothing was recorded"
        assert (await orq._broker().stats("escavador_x")).depth == 0
    finally:
        await orq.close()


async def test_an_invalid_option_on_the_wire_is_dead_lettered_with_its_reason() -> None:
    broker = await connect(f"memory://{uuid.uuid4().hex}")
    plugin = Plugin("escavador", "gate", lambda p: p, "tests")
    body = json.loads(wire.encode(wire.nova("iniciar_coleta", {}, alvo="gate")))
    body["prioridade"] = 42
    await broker.declare(plugin.fila)
    await broker.publish(plugin.fila, json.dumps(body).encode())
    worker = Worker(broker, [plugin], WorkerOptions(fetch_timeout=0.1))
    running = asyncio.create_task(worker.run())
    try:
        letters = await eventually(lambda: broker.peek(dlq_of(plugin.fila)))
    finally:
        worker.stop()
        await asyncio.wait_for(running, 10)
        await broker.close()
    assert "prioridade" in letters[0].headers[DLQ_REASON]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--executar-em", "2030-01-02T06:00"], "--executar-em '2030-01-02T06:00' has no UTC offset"),
        (["--expira-em", "tomorrow"], "--expira-em 'tomorrow' is not an ISO 8601 time"),
        (["--atraso", "5", "--executar-em", "2030-01-02T06:00Z"], "either atraso= (seconds) or executar_em="),
        (["--atraso", "60", "--ttl", "30"], "not after executar_em"),
    ],
)
def test_the_cli_refuses_bad_timing_before_connecting(flags: list[str], message: str) -> None:
    from tests.test_cli import orq

    result = orq("publish", "iniciar_coleta", "-a", "x", "--broker", "nats://127.0.0.1:1", *flags)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr


def test_the_cli_bounds_prioridade() -> None:
    from tests.test_cli import orq

    result = orq("publish", "iniciar_coleta", "-a", "x", "--prioridade", "10", "--broker", "memory://")
    assert result.returncode == 2 and "Invalid value for '--prioridade'" in result.stderr, result.stderr


def test_asyncapi_documents_the_fields_on_jobs_only() -> None:
    from orquestrador import asyncapi

    schemas = asyncapi.document("nats://127.0.0.1:4222")["components"]["schemas"]
    job = schemas["iniciar_coleta"]["properties"]
    assert {"prioridade", "executar_em", "expira_em"} <= set(job)
    assert job["prioridade"]["anyOf"][0]["maximum"] == 9 and "expired" in job["expira_em"]["description"]
    assert not {"prioridade", "executar_em", "expira_em"} & set(schemas["resultado_coleta"]["properties"])


@pytest.mark.parametrize("wait", [0.0123, 2.487, 59.9, 10_834.567, 86_399.999])
def test_held_back_in_buckets_a_job_comes_back_early_never_late_and_closes_in(wait: float) -> None:
    """Delay buckets round up (retries share a few); holding back a job uses the bucket at or
    below its wait instead, then again for the rest: a few steps, and never past its time."""
    from orquestrador.brokers.support.delays import bucket_ms, bucket_ms_below

    remaining, steps = wait, 0
    while remaining > gate.EARLY_SLACK:
        step = bucket_ms_below(remaining) / 1000
        assert bucket_ms(step) / 1000 == pytest.approx(step, abs=0.0015)  # the bucket it lands in
        assert step <= remaining
        remaining -= step
        steps += 1
    assert steps <= 5
