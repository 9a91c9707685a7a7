"""Broker-level fields, read as carefully as a body: checked, bounded, never trusted.

A body goes through the envelope's intake (:func:`orquestrador.envelope.decode`). What a broker
carries beside it (Redis entry fields, NATS headers, AMQP properties and headers, attempt
counters) comes from the same publishers, so it is read through a :class:`FieldReader`: what can
be read comes back cleaned (text, bounded), and what cannot becomes the delivery's ``problem``,
which the worker and the orchestrator dead-letter with that reason, as they do a malformed body.
Nothing here raises, so building a delivery never stops a ``fetch``; the dead letter carries the
cleaned headers, never the raw ones.

An adapter declares once where its broker keeps these fields (:class:`DeliveryFields`) and hands
each delivery's raw values to :meth:`DeliveryFields.read`; the reading itself is written here only.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol, cast

MAX_HEADERS = 64
MAX_KEY = 128
MAX_VALUE = 8192
MAX_ID = 200  # as the envelope's message_id
MAX_COUNT = 1_000_000  # attempts; more is a forged counter
MAX_HEADERS_FIELD = MAX_HEADERS * (MAX_KEY + MAX_VALUE)


class FieldReader:
    """Reads one delivery's broker fields, noting each that cannot be read (see the module)."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    @property
    def problem(self) -> str | None:
        """The dead-letter reason, or None when every field could be read."""
        if not self.problems:
            return None
        more = f" (+{len(self.problems) - 3} more)" if len(self.problems) > 3 else ""
        return "unreadable broker fields: " + "; ".join(self.problems[:3]) + more

    def text(self, value: Any, what: str, limit: int = MAX_ID) -> str | None:
        """A short text field (an id): UTF-8, printable, at most ``limit`` characters."""
        if value is None or value in (b"", ""):
            return None
        value = self._utf8(value, what)
        if value is None:
            return None
        if not isinstance(value, str):
            self.problems.append(f"{what} is not text ({type(value).__name__})")
            return None
        if len(value) > limit:
            self.problems.append(f"{what} is longer than {limit} characters")
            return None
        if not value.isprintable():
            self.problems.append(f"{what} holds control characters")
            return None
        return value

    def count(self, value: Any, what: str) -> int:
        """An attempt counter: a whole number from 0 to MAX_COUNT (absent is 0)."""
        if value is None or value in (b"", ""):
            return 0
        if isinstance(value, bytes | str) and len(value) <= 7:
            text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
            if text.isascii() and text.isdigit():
                return int(text)
        elif isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_COUNT:
            return value
        self.problems.append(f"{what} is not an attempt count")
        return 0

    def headers(
        self, items: Iterable[tuple[Any, Any]], what: str, *, skip: tuple[str, ...] = ()
    ) -> dict[str, str]:
        """Text keys and values, bounded in number and size; ``skip`` names prefixes to leave out."""
        out: dict[str, str] = {}
        for key, value in items:
            name = _key(key)
            if name is None:
                self.problems.append(f"{what}: a header name is not short printable text")
                continue
            if skip and name.lower().startswith(skip):
                continue
            if len(out) >= MAX_HEADERS:
                self.problems.append(f"{what}: more than {MAX_HEADERS} headers")
                break
            text = self._value(value, f"{what} {name[:40]!r}")
            if text is not None:
                out[name] = text
        return out

    def headers_json(self, raw: bytes | None, what: str) -> dict[str, str]:
        """Headers stored as a JSON object (the Redis entry field ``h``)."""
        if not raw:
            return {}
        if len(raw) > MAX_HEADERS_FIELD:
            self.problems.append(f"{what} is over {MAX_HEADERS_FIELD // 1024} KiB")
            return {}
        try:
            data = json.loads(raw)
        except RecursionError:
            self.problems.append(f"{what} is JSON nested too deeply")
            return {}
        except ValueError:  # invalid JSON or UTF-8
            self.problems.append(f"{what} is not valid JSON")
            return {}
        if not isinstance(data, dict):
            self.problems.append(f"{what} is not a JSON object")
            return {}
        return self.headers(data.items(), what)

    def _utf8(self, value: Any, what: str) -> Any:
        """Bytes as text (None, noted, if they are not UTF-8); anything else as it is."""
        if not isinstance(value, bytes):
            return value
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            self.problems.append(f"{what} is not UTF-8")
            return None

    def _value(self, value: Any, what: str) -> str | None:
        value = self._utf8(value, what)
        if value is None:
            return None
        if isinstance(value, dict | list | tuple):
            try:
                value = json.dumps(value, ensure_ascii=False, default=str)
            except (RecursionError, ValueError, TypeError):
                self.problems.append(f"{what} is nested too deeply")
                return None
        elif not isinstance(value, str):
            value = str(value)  # numbers, booleans, timestamps (AMQP tables), email Header objects
        if len(value) > MAX_VALUE:
            self.problems.append(f"{what} is longer than {MAX_VALUE} characters")
            return None
        return cast(str, value)


class Target(Protocol):
    """What :meth:`DeliveryFields.read` fills in: a :class:`~orquestrador.brokers.base.Delivery`."""

    headers: dict[str, str]
    message_id: str | None
    problem: str | None


@dataclass(frozen=True, slots=True)
class DeliveryFields:
    """Where one broker keeps what a publisher sets beside the body, and the names a dead-letter
    reason gives those fields. Only the raw values differ between adapters; the reading is one.
    """

    headers: str  # e.g. "NATS headers"
    message_id: str  # e.g. "Nats-Msg-Id header"
    count: str = ""  # the attempt count a publisher may set, if the broker keeps one there
    skip: tuple[str, ...] = ()  # header prefixes that steer the broker: never carried over
    json_headers: bool = False  # the headers are one JSON object (the Redis entry field ``h``)

    def read(
        self,
        delivery: Target,
        headers: Any,
        message_id: Any,
        *,
        count: Any = None,
        problem: str | None = None,
    ) -> int:
        """Set ``delivery``'s ``headers``, ``message_id`` and ``problem`` from the raw fields;
        returns the attempt count in ``count`` (0 when absent or unreadable). ``problem``: one
        the adapter found itself, reported first."""
        reader = FieldReader()
        if problem:
            reader.problems.append(problem)
        delivery.headers = self._headers(headers, reader)
        attempts = reader.count(count, self.count) if self.count else 0
        delivery.message_id = reader.text(message_id, self.message_id)
        delivery.problem = reader.problem
        return attempts

    def clean(self, headers: Any) -> dict[str, str]:
        """Headers for a peek or a re-published copy: what can be read, the rest left out."""
        return self._headers(headers, FieldReader())

    def _headers(self, raw: Any, reader: FieldReader) -> dict[str, str]:
        if self.json_headers:
            return reader.headers_json(raw, self.headers)
        items = raw.items() if isinstance(raw, dict) else ()
        return reader.headers(items, self.headers, skip=self.skip)


def _key(key: Any) -> str | None:
    if isinstance(key, bytes):
        try:
            key = key.decode("utf-8")
        except UnicodeDecodeError:
            return None
    if not isinstance(key, str) or not key or len(key) > MAX_KEY or not key.isprintable():
        return None
    return key


def clean_headers(items: Iterable[tuple[Any, Any]], *, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """Headers for showing (peek): what can be read, silently leaving out what cannot."""
    return FieldReader().headers(items, "headers", skip=skip)


__all__ = ["MAX_HEADERS", "MAX_VALUE", "DeliveryFields", "FieldReader", "clean_headers"]
