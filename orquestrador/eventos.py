"""Best-effort lifecycle events that workers emit so a live trace can show a job as running.

They travel on a plain pub/sub subject, never on a queue: losing one loses a detail of the
picture, never a job. The four envelope types stay the durable contract.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

SUBJECT = "orq.eventos"

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

    def encode(self) -> bytes:
        return json.dumps(asdict(self), default=str).encode()

    @classmethod
    def decode(cls, body: bytes) -> EventoJob | None:
        try:
            data = json.loads(body)
            return cls(**data)
        except (ValueError, TypeError):
            return None
