"""The one JSON format of a message on a topic, whoever publishes it and on whatever broker::

    {"topico": "orders.created", "dados": {...}, "headers": {"k": "v"},
     "message_id": "uuid", "timestamp": "2026-12-02T12:00:00.000000Z",
     "correlation_id": "uuid", "versao": 1}

``dados`` is any JSON value; ``correlation_id`` is there when the message belongs to a job
chain (the toolkit's own result and lifecycle topics). Bodies come from anyone, so
:meth:`TopicMessage.decode` checks every field and says what is wrong.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from orquestrador.display import MAX_DEPTH, depth
from orquestrador.envelope import DEFAULT_MAX_BYTES, iso, new_id
from orquestrador.errors import PayloadTooLarge, TopicError
from orquestrador.topics.patterns import validate_topic

VERSION = 1


@dataclass(frozen=True)
class TopicMessage:
    topico: str
    dados: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    message_id: str = field(default_factory=new_id)
    timestamp: str = field(default_factory=lambda: iso(time.time()))
    correlation_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "topico": self.topico, "dados": self.dados, "headers": self.headers,
            "message_id": self.message_id, "timestamp": self.timestamp, "versao": VERSION,
        }  # fmt: skip
        if self.correlation_id is not None:
            data["correlation_id"] = self.correlation_id
        return data

    def encode(self, *, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
        validate_topic(self.topico)
        _check_headers(self.headers)
        try:
            body = json.dumps(self.as_dict(), ensure_ascii=False, allow_nan=False).encode()
        except (TypeError, ValueError) as exc:
            raise TopicError(f"dados for topic {self.topico!r} are not JSON: {exc}") from exc
        if len(body) > max_bytes:
            raise PayloadTooLarge(
                f"message for topic {self.topico!r} is {len(body)} bytes, over the {max_bytes}-byte "
                "limit: publish a reference (a URL or a path) instead of the data"
            )
        return body

    @classmethod
    def decode(cls, body: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> TopicMessage:
        """A message read from a broker; :class:`TopicError` says why a body is not one."""
        if len(body) > max_bytes:
            raise TopicError(f"topic message is {len(body)} bytes, over the {max_bytes}-byte limit")
        try:
            data = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise TopicError(f"topic message is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise TopicError(f"topic message is a JSON {type(data).__name__}, not an object")
        if depth(data) > MAX_DEPTH:
            raise TopicError(f"topic message nests deeper than {MAX_DEPTH} levels")
        unknown = set(data) - _FIELDS
        if unknown:
            data = {k: v for k, v in data.items() if k in _FIELDS}  # forward compatible
        topico = data.get("topico")
        try:
            validate_topic(topico)
        except TopicError as exc:
            raise TopicError(f"topic message has no valid 'topico': {exc}") from None
        for name in ("message_id", "timestamp"):
            if not isinstance(data.get(name), str) or not 0 < len(data[name]) <= 200:
                raise TopicError(f"topic message on {topico!r} has no valid {name!r}")
        correlation_id = data.get("correlation_id")
        if correlation_id is not None and (not isinstance(correlation_id, str) or len(correlation_id) > 200):
            raise TopicError(f"topic message on {topico!r} has a bad 'correlation_id'")
        headers = data.get("headers", {})
        _check_headers(headers)
        return cls(
            topico=str(topico), dados=data.get("dados"), headers=headers, message_id=data["message_id"],
            timestamp=data["timestamp"], correlation_id=correlation_id,
        )  # fmt: skip


_FIELDS = frozenset({"topico", "dados", "headers", "message_id", "timestamp", "correlation_id", "versao"})


def _check_headers(headers: object) -> None:
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and len(k) <= 200 and len(v) <= 4096
        for k, v in headers.items()
    ):
        raise TopicError("topic headers are a dict of str to str (keys up to 200, values up to 4096 chars)")
