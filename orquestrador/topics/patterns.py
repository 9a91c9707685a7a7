"""Topic names and patterns, and the one matching rule every broker is held to.

Brokers disagree on wildcards: Redis's ``*`` crosses dots, AMQP's ``#`` also matches zero
tokens, Kafka and SNS have none. So every adapter may deliver a superset and filters with
:func:`matches`, which is the definition.
"""

from __future__ import annotations

import re

from orquestrador.errors import TopicError

MAX_TOPIC_LENGTH = 200
_TOKEN = re.compile(r"[A-Za-z0-9_-]+")


def validate_topic(topic: object) -> str:
    """A concrete topic to publish on: tokens of letters, digits, ``_`` or ``-``, joined by dots."""
    return _validate(topic, wildcards=False)


def validate_pattern(pattern: object) -> str:
    """A subscription pattern: a topic whose tokens may be ``*``, and whose last may be ``>``."""
    return _validate(pattern, wildcards=True)


def _validate(name: object, *, wildcards: bool) -> str:
    what = "pattern" if wildcards else "topic"
    if not isinstance(name, str) or not name:
        raise TopicError(f"a {what} is a non-empty string like 'orders.created', not {name!r}")
    if len(name) > MAX_TOPIC_LENGTH:
        raise TopicError(f"{what} {name[:40]!r}… is {len(name)} characters; the limit is {MAX_TOPIC_LENGTH}")
    tokens = name.split(".")
    for i, token in enumerate(tokens):
        if wildcards and (token == "*" or (token == ">" and i == len(tokens) - 1)):
            continue
        if not _TOKEN.fullmatch(token):
            hint = (
                "'*' stands for one whole token and '>' for the rest, last only"
                if wildcards
                else "wildcards belong in subscriptions, not in a published topic"
                if token in ("*", ">")
                else "tokens hold letters, digits, '_' and '-', joined by single dots"
            )
            raise TopicError(f"bad {what} {name!r}: token {token!r} ({hint})")
    return name


def matches(pattern: str, topic: str) -> bool:
    """Whether ``topic`` is one ``pattern`` subscribes to (``*`` one token, ``>`` one or more)."""
    want, have = pattern.split("."), topic.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(have) > i
        if i >= len(have) or (token != "*" and token != have[i]):
            return False
    return len(have) == len(want)


def has_wildcards(pattern: str) -> bool:
    return any(token in ("*", ">") for token in pattern.split("."))


def literal_prefix(pattern: str) -> str:
    """The tokens before the first wildcard (``orq.resultado_coleta`` of
    ``orq.resultado_coleta.*``): what brokers with prefix filters (SNS, Kafka keys) can use."""
    prefix = []
    for token in pattern.split("."):
        if token in ("*", ">"):
            break
        prefix.append(token)
    return ".".join(prefix)
