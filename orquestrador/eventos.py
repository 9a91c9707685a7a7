"""Best-effort lifecycle events that workers emit so a live trace can show a job as running.

They travel on a plain pub/sub subject, never on a queue: losing one loses a detail of the
picture, never a job. The four envelope types stay the durable contract. A worker sends them in
small batches (a JSON array, at most every ``FLUSH_SECONDS``): one broker message per job was a
tenth of a worker's CPU; a live view does not need them sooner.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from orquestrador.display import MAX_DEPTH, depth

SUBJECT = "orq.eventos"
FLUSH_SECONDS = 0.05
MAX_BATCH = 256

# A job's end is its durable resultado_* envelope, so there is no "done" event.
Evento = Literal["iniciado", "progresso", "retry", "dead_letter"]


@dataclass(frozen=True)
class EventoJob:
    evento: Evento
    correlation_id: str
    message_id: str
    alvo: str
    worker: str
    tentativa: int
    at: float = field(default_factory=time.time)
    detalhe: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        # Not dataclasses.asdict: it deep-copies every field, a cost paid per job.
        return {"evento": self.evento, "correlation_id": self.correlation_id, "message_id": self.message_id,
                "alvo": self.alvo, "worker": self.worker, "tentativa": self.tentativa, "at": self.at,
                "detalhe": self.detalhe}  # fmt: skip

    def encode(self) -> bytes:
        return json.dumps(self.as_dict(), default=str).encode()

    @classmethod
    def decode(cls, body: bytes) -> EventoJob | None:
        """One event, as sent alone; None when the body is not one."""
        events = cls.decode_many(body)
        return events[0] if len(events) == 1 else None

    @classmethod
    def decode_many(cls, body: bytes) -> list[EventoJob]:
        """The events of a message: one object, or an array of them as workers batch them.

        Malformed entries are skipped: events are best effort and come from anyone on the subject.
        """
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            return []
        events = []
        for item in data if isinstance(data, list) else [data]:
            if _well_typed(item):
                events.append(cls(**item))
        return events


_TEXT = ("correlation_id", "message_id", "alvo", "worker")
_EVENTOS = frozenset(Evento.__args__)  # type: ignore[attr-defined]


def _well_typed(item: Any) -> bool:
    """Only what the store can record: the fields of an event, each of its type and bounded."""
    if not isinstance(item, dict) or set(item) - _FIELDS or not set(item) >= _REQUIRED:
        return False
    detalhe = item.get("detalhe", {})
    if item["evento"] not in _EVENTOS or not isinstance(detalhe, dict) or depth(detalhe) > MAX_DEPTH:
        return False
    if not all(isinstance(item[k], str) and len(item[k]) <= 200 for k in _TEXT):
        return False
    number = (int, float)
    tentativa, at = item["tentativa"], item.get("at", 0.0)
    return (
        isinstance(tentativa, int) and not isinstance(tentativa, bool) and 0 <= tentativa <= 1_000_000
        and isinstance(at, number) and not isinstance(at, bool) and math.isfinite(at)
    )  # fmt: skip


_REQUIRED = frozenset({"evento", *_TEXT, "tentativa"})
_FIELDS = _REQUIRED | {"at", "detalhe"}


def encode_many(events: list[EventoJob]) -> bytes:
    """A batch of events as one message body (a JSON array)."""
    return json.dumps([e.as_dict() for e in events], default=str).encode()
