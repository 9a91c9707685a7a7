"""What each adapter declares it can do is what the README says of it, and what the toolkit reads.

The README's "where they differ" table is written for people; this test keeps it true to the
``Capabilities`` each adapter declares, so neither can drift from the other.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from orquestrador.brokers import Capabilities, registry
from orquestrador.errors import ConfigError
from tests.conftest import ADAPTERS

README = Path(__file__).resolve().parents[2] / "README.md"
COLUMNS = {
    "NATS": "nats", "Redis": "redis", "RabbitMQ": "rabbitmq", "BullMQ": "bullmq", "SQS": "sqs",
    "Kafka": "kafka",
}  # fmt: skip

# README row -> (capability, a pattern a cell matches exactly when the broker has it (True) or lacks it).
ROWS: dict[str, tuple[str, str, bool]] = {
    "attempt count from": ("delivery_count", "restamped", False),
    "delayed retry": ("delayed_redelivery", "delay buckets", False),
    "lease (visibility timeout)": ("server_lease", "client-side lease", False),
    "`in_flight` in stats": ("global_in_flight", "every worker's", True),
    "`oldest_age` in stats": ("oldest_age", "^known$", True),
    "replay skips letters dead-lettered while it runs": ("positions", "by count only", False),
    "`peek`": ("side_effect_free_peek", "no side effect", True),
    "shared rate limits": ("shared_slots", "^yes", True),
    "topic subscriptions (see Topics)": ("durable_topics", "^live only", False),
    "same `message_id` published twice within 120 s": ("server_dedup", "once per connection", False),
}
NOT_IN_TABLE = {
    "cross_process": "every broker in the table crosses processes; memory:// is not in it",
    "counts_reconnects": "an internal matter of metrics, not a difference a user plans around",
}


def _table() -> dict[str, dict[str, str]]:
    text = README.read_text(encoding="utf-8")
    start = text.index("| | " + " | ".join(COLUMNS) + " |")
    lines = text[start:].split("\n\n", 1)[0].splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows: dict[str, dict[str, str]] = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(header[1:], cells[1:], strict=True))
    return rows


def test_every_capability_is_a_row_of_the_readme_table_or_said_why_not():
    fields = set(Capabilities.__dataclass_fields__)
    covered = {capability for capability, _phrase, _has in ROWS.values()} | set(NOT_IN_TABLE)
    assert covered == fields


@pytest.mark.parametrize("row", sorted(ROWS))
def test_the_readme_table_says_what_the_adapters_declare(row: str):
    capability, phrase, phrase_means_has = ROWS[row]
    cells = _table()[row]
    for column, name in COLUMNS.items():
        has = getattr(ADAPTERS[name].capabilities, capability)
        says = re.search(phrase, cells[column], re.IGNORECASE) is not None
        shown = f"{row!r} for {column}: {cells[column]!r}, but {capability}={has}"
        assert says == (has == phrase_means_has), shown


def test_every_built_in_scheme_is_registered_through_the_entry_point_group():
    schemes = registry.registrations()
    assert {s for s, r in schemes.items() if r.distribution == "orquestrador"} == {
        "memory", "nats", "tls", "redis", "rediss", "amqp", "amqps", "bullmq", "bullmqs", "sqs", "kafka",
        "kafkas",
    }  # fmt: skip
    for scheme in schemes:
        assert isinstance(registry.adapter_for(scheme).capabilities, Capabilities)


def test_an_unknown_scheme_names_the_known_ones_and_how_to_add_one():
    with pytest.raises(ConfigError) as caught:
        registry.adapter_for("zeromq")
    message = str(caught.value)
    assert "nats://" in message and "amqp://" in message and "orquestrador.brokers" in message


def test_without_aiokafka_a_kafka_url_says_which_extra_to_install(monkeypatch):  # type: ignore[no-untyped-def]
    import sys

    monkeypatch.setitem(sys.modules, "aiokafka", None)  # as if it were not installed
    for name in [m for m in sys.modules if m.startswith("orquestrador.brokers.kafka")]:
        monkeypatch.delitem(sys.modules, name)
    registry.refresh()
    try:
        with pytest.raises(ConfigError, match=r'pip install "orquestrador\[kafka\]"'):
            registry.adapter_for("kafka")
    finally:
        registry.refresh()
