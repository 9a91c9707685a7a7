"""Schedules without a broker: parsing, next occurrences across DST, the missed-occurrence policy."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from orquestrador import ScheduleError
from orquestrador.agenda import Agenda, make, occurrence_id, parse_cada
from orquestrador.agenda.model import MAX_BURST


def at(text: str, fuso: str = "UTC") -> float:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(fuso)).timestamp()


def local(epoch: float, fuso: str) -> str:
    return datetime.fromtimestamp(epoch, ZoneInfo(fuso)).strftime("%Y-%m-%d %H:%M %Z")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10s", 10), ("30m", 1800), ("1h", 3600), ("1d", 86400), ("1h30m", 5400), (" 2 H ", 7200), (90, 90)],
)
def test_intervals_read_as_seconds(text: str | int, seconds: float) -> None:
    assert parse_cada(text) == seconds


@pytest.mark.parametrize("bad", ["", "1x", "h", "1h 2", "-1h", "0s", "0.5s", True, None, [1]])
def test_bad_intervals_say_how_to_write_one(bad: object) -> None:
    with pytest.raises(ScheduleError, match="cada"):
        parse_cada(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"cron": "0 6 * *"}, "not a cron expression"),
        ({"cron": "61 6 * * *"}, "not a cron expression"),
        ({"cron": "0 6 * * *", "fuso": "America/Nowhere"}, "not a known time zone"),
        ({"cada": "1h", "cron": "0 6 * * *"}, "exactly one"),
        ({}, "exactly one"),
        ({"cada": "1h", "perdidas": "todas"}, "perdidas"),
        ({"cada": "1h", "id": "Has Spaces"}, "id="),
    ],
)
def test_bad_definitions_are_refused_with_what_to_do(options: dict[str, str], match: str) -> None:
    with pytest.raises(ScheduleError, match=match):
        make("escavador", "http", {}, responder_para="r", **options)  # type: ignore[arg-type]


def test_unknown_kind_and_non_json_payload_are_refused() -> None:
    with pytest.raises(ScheduleError, match="kind"):
        make("coletor", "http", {}, responder_para="r", cada="1h")
    with pytest.raises(ScheduleError, match="JSON"):
        make("escavador", "http", {"x": object()}, responder_para="r", cada="1h")


def test_a_definition_round_trips_through_json() -> None:
    agenda = make(
        "executor", "salvar", {"a": 1}, responder_para="r", cron="0 6 * * *", fuso="America/Sao_Paulo"
    )
    assert Agenda.from_json(agenda.to_json()) == agenda
    assert agenda.tipo_evento == "iniciar_execucao"
    assert agenda.quando == "cron 0 6 * * * America/Sao_Paulo"


def cron(expr: str, fuso: str, **changes: object) -> Agenda:
    agenda = make("escavador", "http", {}, responder_para="r", cron=expr, fuso=fuso)
    return agenda.with_changes(criada_em=0.0, desde=0.0, **changes)


def test_daily_cron_follows_the_zone() -> None:
    agenda = cron("0 6 * * *", "America/Sao_Paulo")
    nxt = agenda.next_after(at("2026-03-10 07:00", "America/Sao_Paulo"))
    assert local(nxt, "America/Sao_Paulo") == "2026-03-11 06:00 -03"
    assert datetime.fromtimestamp(nxt, ZoneInfo("UTC")).hour == 9


def test_cron_across_spring_forward_keeps_wall_time_and_skips_the_missing_hour() -> None:
    # New York moves 02:00 -> 03:00 on 2026-03-08: 06:00 stays 06:00 local (one day is 23 h).
    daily = cron("0 6 * * *", "America/New_York")
    first = daily.next_after(at("2026-03-07 07:00", "America/New_York"))
    second = daily.next_after(first)
    assert local(first, "America/New_York") == "2026-03-08 06:00 EDT"
    assert local(second, "America/New_York") == "2026-03-09 06:00 EDT"
    assert first - daily.next_after(at("2026-03-06 07:00", "America/New_York")) == 23 * 3600


def test_cron_across_fall_back_fires_the_repeated_hour_once() -> None:
    # New York repeats 01:00-02:00 on 2026-11-01: a 01:30 job still runs once that day.
    agenda = cron("30 1 * * *", "America/New_York")
    start = at("2026-10-31 12:00", "America/New_York")
    fired: list[str] = []
    t = start
    for _ in range(3):
        t = agenda.next_after(t)
        fired.append(local(t, "America/New_York")[:10])
    assert fired == ["2026-11-01", "2026-11-02", "2026-11-03"]


def every(seconds: float, created: float, **changes: object) -> Agenda:
    agenda = make("escavador", "http", {}, responder_para="r", cada=seconds, **changes)  # type: ignore[arg-type]
    return agenda.with_changes(criada_em=created, desde=created)


def test_interval_occurrences_count_from_creation() -> None:
    agenda = every(10, 1000.0)
    assert agenda.next_after(1000.0) == 1010.0
    assert agenda.next_after(1015.0) == 1020.0
    assert agenda.due(1000.0, 1035.0) == [1010.0, 1020.0, 1030.0]
    assert agenda.due(1030.0, 1035.0) == []


def test_occurrences_within_the_tolerance_are_each_fired_once() -> None:
    agenda = every(1, 1000.0, tolerancia=60)
    assert agenda.due(1000.0, 1010.5) == [float(t) for t in range(1001, 1011)]


def test_older_missed_occurrences_are_caught_up_once_by_default() -> None:
    agenda = every(60, 0.0, tolerancia=30)
    # Down from 120 to 3600: 180 ... 3540 are older than the tolerance, 3600 is not.
    assert agenda.due(120.0, 3600.0) == [3540.0, 3600.0]
    assert agenda.due(120.0, 3595.0) == [3540.0]


def test_older_missed_occurrences_are_skipped_with_perdidas_nenhuma() -> None:
    agenda = every(60, 0.0, tolerancia=30, perdidas="nenhuma")
    assert agenda.due(120.0, 3600.0) == [3600.0]
    assert agenda.due(120.0, 3595.0) == []


def test_missed_cron_occurrences_follow_the_policy_too() -> None:
    daily = cron("0 6 * * *", "UTC", tolerancia=60.0)
    down_since = at("2026-01-01 07:00")
    back = at("2026-01-05 12:00")
    assert [local(t, "UTC") for t in daily.due(down_since, back)] == ["2026-01-05 06:00 UTC"]
    assert daily.with_changes(perdidas="nenhuma").due(down_since, back) == []


def test_a_resumed_schedule_does_not_fire_what_fell_due_while_paused() -> None:
    agenda = every(10, 0.0).with_changes(desde=100.0)
    assert agenda.due(20.0, 125.0) == [110.0, 120.0]


def test_a_burst_is_bounded() -> None:
    agenda = every(1, 0.0, tolerancia=10 * MAX_BURST)
    assert len(agenda.due(0.0, 5 * MAX_BURST)) == MAX_BURST


def test_occurrence_ids_are_the_same_for_whoever_fires() -> None:
    assert occurrence_id("a", 10.0) == occurrence_id("a", 10.0)
    assert occurrence_id("a", 10.0) != occurrence_id("a", 11.0) != occurrence_id("b", 10.0)
