"""The topic names, the one matching rule and the message format every broker is held to."""

from __future__ import annotations

import json

import pytest

from orquestrador.errors import PayloadTooLarge, TopicError
from orquestrador.topics import TopicMessage, matches, validate_pattern, validate_topic
from orquestrador.topics.patterns import literal_prefix


@pytest.mark.parametrize(
    ("pattern", "topic", "expected"),
    [
        ("orders.created", "orders.created", True),
        ("orders.*", "orders.created", True),
        ("orders.*", "orders.created.eu", False),  # '*' is one token, never more
        ("orders.*", "orders", False),
        ("orders.>", "orders.created.eu", True),
        ("orders.>", "orders", False),  # '>' is one token or more (unlike AMQP's '#')
        ("*.created", "payments.created", True),
        ("orq.resultado_*.>", "orq.resultado_coleta.http", False),  # '*' is a whole token
        ("orq.*.>", "orq.resultado_coleta.http", True),
        (">", "anything.at.all", True),
        ("orders.created", "orders.created.eu", False),
    ],
)
def test_matching_is_by_whole_tokens(pattern: str, topic: str, expected: bool) -> None:
    assert matches(pattern, topic) is expected


@pytest.mark.parametrize("bad", ["", "orders..created", "orders.*", "orders.>", "a b", ".x", "x.", 7])
def test_published_topics_are_concrete(bad: object) -> None:
    with pytest.raises(TopicError):
        validate_topic(bad)


@pytest.mark.parametrize("bad", ["orders.>.x", "orders.a*", "orders.#", "", "orders.."])
def test_patterns_use_whole_token_wildcards(bad: str) -> None:
    with pytest.raises(TopicError):
        validate_pattern(bad)


def test_good_patterns_pass() -> None:
    for good in ["orders.*", "orq.>", "*.*.x", ">", "a-b.c_d"]:
        assert validate_pattern(good) == good


def test_literal_prefix() -> None:
    assert literal_prefix("orq.resultado_coleta.*") == "orq.resultado_coleta"
    assert literal_prefix(">") == ""


def test_message_round_trip_keeps_every_field() -> None:
    msg = TopicMessage("orders.created", {"id": 7}, headers={"k": "v"}, correlation_id="c-1")
    back = TopicMessage.decode(msg.encode())
    assert back == msg
    assert json.loads(msg.encode())["versao"] == 1


def test_message_without_correlation_has_no_such_field() -> None:
    assert "correlation_id" not in json.loads(TopicMessage("a.b", 1).encode())


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1]",
        b'{"dados": 1}',
        b'{"topico": "a.*", "message_id": "m", "timestamp": "t"}',
        b'{"topico": "a.b", "timestamp": "t"}',
        b'{"topico": "a.b", "message_id": "m", "timestamp": "t", "headers": {"k": 1}}',
        b'{"topico": "a.b", "message_id": "m", "timestamp": "t", "correlation_id": 5}',
        b"[" * 100 + b"]" * 100,
    ],
)
def test_untrusted_bodies_are_refused_with_a_reason(body: bytes) -> None:
    with pytest.raises(TopicError):
        TopicMessage.decode(body)


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    body = b'{"topico": "a.b", "message_id": "m", "timestamp": "t", "novo": 1}'
    assert TopicMessage.decode(body).topico == "a.b"


def test_oversized_and_non_json_data_are_refused_before_publishing() -> None:
    with pytest.raises(PayloadTooLarge, match="reference"):
        TopicMessage("a.b", "x" * 2_000_000).encode()
    with pytest.raises(TopicError, match="not JSON"):
        TopicMessage("a.b", {1, 2}).encode()
