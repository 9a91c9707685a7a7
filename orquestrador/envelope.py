"""Wire format v1: the JSON envelope every producer and worker exchanges.

The four fields of the interface note (``correlation_id``, ``tipo_evento``, ``payload``,
``timestamp``) are the whole contract; a message published by hand with plain pika or nats-py
is a valid job. Our own fields are optional on read, and fields we do not know are kept when an
envelope is re-encoded, so newer producers can talk to older workers.
"""

from __future__ import annotations

import hashlib
import os
import threading
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from orquestrador.errors import EnvelopeError, PayloadTooLarge
from orquestrador.vocabulary import RESULTADO_DE, TIPOS_EVENTO, TipoEvento, is_request

DEFAULT_MAX_BYTES = 1024 * 1024
DEFAULT_RESULTS_QUEUE = "orquestrador_resultados"
VERSAO = 1


class Erro(BaseModel):
    """Why a job failed: the exception type and its message (plus any extra detail)."""

    model_config = ConfigDict(extra="allow")

    tipo: str
    mensagem: str


class Envelope(BaseModel):
    """One message of a job chain. Immutable so a delivered envelope is never edited in place."""

    # Cached by the JSON parser: keys only. Ids and timestamps never repeat, and a cache of every
    # string (the default) kept 16,384 of them, 1.5 MiB in every worker and orchestrator.
    model_config = ConfigDict(extra="allow", frozen=True, cache_strings="keys")

    correlation_id: str = Field(min_length=1, max_length=200)
    tipo_evento: TipoEvento
    payload: dict[str, Any]
    timestamp: datetime
    message_id: str | None = Field(default=None, min_length=1, max_length=200)
    causation_id: str | None = None
    alvo: str | None = None
    responder_para: str | None = None
    tentativa: int | None = Field(default=None, ge=1)
    headers: dict[str, str] = Field(default_factory=dict)
    versao: int = VERSAO
    status: Literal["ok", "erro"] | None = None
    erro: Erro | None = None
    # When and in what order (orquestrador.job_options): absent unless a launch set them.
    prioridade: int | None = Field(
        default=None, ge=0, le=9, strict=True,
        description="0 (default) to 9, 9 the most urgent: under a backlog higher priorities start first",
    )  # fmt: skip
    executar_em: datetime | None = Field(
        default=None, description="the job is not started before this time (UTC)"
    )
    expira_em: datetime | None = Field(
        default=None,
        description="a job not started by this time (UTC) is never run: dead-lettered with reason "
        "'expired' and answered with status erro",
    )

    @field_validator("timestamp", "executar_em", "expira_em")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        # A naive time is ambiguous across machines; the contract is UTC.
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    @property
    def is_request(self) -> bool:
        return is_request(self.tipo_evento)

    @property
    def extras(self) -> dict[str, Any]:
        """Fields this version does not know, kept for forward compatibility."""
        return dict(self.__pydantic_extra__ or {})

    def with_changes(self, **changes: Any) -> Envelope:
        return self.model_copy(update=changes)


def now() -> datetime:
    return datetime.now(UTC)


def iso(epoch: float) -> str:
    """Epoch seconds as the wire writes times: ISO 8601 in UTC with a ``Z``."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class _Entropy(threading.local):
    """os.urandom in blocks of 256 ids: one system call per block instead of one per id.

    Per thread, and dropped in a forked child, so no two threads or processes share bytes.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.block = b""
        self.at = 0


_entropy = _Entropy()
os.register_at_fork(after_in_child=_entropy.reset)


def new_id() -> str:
    """A random (version 4) UUID string, as str(uuid.uuid4()) but without a syscall per id."""
    if _entropy.at >= len(_entropy.block):
        _entropy.block, _entropy.at = os.urandom(16 * 256), 0
    h = _entropy.block[_entropy.at : _entropy.at + 16].hex()
    _entropy.at += 16
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}  # RFC 4122 variant bits 10xx


def nova(
    tipo_evento: TipoEvento,
    payload: dict[str, Any],
    *,
    alvo: str | None = None,
    correlation_id: str | None = None,
    causation_id: str | None = None,
    responder_para: str | None = None,
    headers: dict[str, str] | None = None,
) -> Envelope:
    """A fresh envelope with its ids and timestamp filled in."""
    return Envelope(
        correlation_id=correlation_id or new_id(),
        tipo_evento=tipo_evento,
        payload=payload,
        timestamp=now(),
        message_id=new_id(),
        causation_id=causation_id,
        alvo=alvo,
        responder_para=responder_para,
        headers=headers or {},
    )


def encode(envelope: Envelope, *, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """Serialise for the wire, refusing envelopes the brokers (or readers) should not carry."""
    body = envelope.model_dump_json(exclude_none=True).encode()
    if len(body) > max_bytes:
        raise PayloadTooLarge(
            f"envelope of {envelope.tipo_evento} for {envelope.alvo or '?'} is "
            f"{_size(len(body))}, over the {_size(max_bytes)} limit: send a reference "
            "(URL, file path) instead of the data, or raise max_message_bytes"
        )
    return body


def decode(body: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Envelope:
    """Read wire bytes; any problem becomes :class:`EnvelopeError` with a one-line reason."""
    if len(body) > max_bytes:
        raise PayloadTooLarge(f"message is {_size(len(body))}, over the {_size(max_bytes)} limit")
    try:
        envelope = Envelope.model_validate_json(body)
    except ValidationError as exc:
        raise EnvelopeError(_reason(exc)) from None
    if envelope.message_id is None:
        # Hand-published messages have no id; derive a stable one so redeliveries dedupe.
        envelope = envelope.with_changes(message_id=content_id(body))
    return envelope


def content_id(body: bytes) -> str:
    return str(uuid.UUID(bytes=hashlib.sha256(body).digest()[:16], version=5))


def _reason(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False)
    first = errors[0]
    if first["type"] in ("json_invalid", "json_type"):
        return f"not valid JSON: {first['msg']}"
    if first["type"] == "model_type" or (first["loc"] == () and first["type"] != "json_invalid"):
        return "not an envelope: expected a JSON object with correlation_id, tipo_evento, payload, timestamp"
    parts = []
    for err in errors[:3]:
        where = ".".join(str(p) for p in err["loc"]) or "envelope"
        parts.append(f"{where}: {err['msg']}")
    more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
    return "not a valid envelope: " + "; ".join(parts) + more


def _size(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MiB" if n >= 1024 * 1024 else f"{n / 1024:.1f} KiB"


__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_RESULTS_QUEUE",
    "RESULTADO_DE",
    "TIPOS_EVENTO",
    "Envelope",
    "Erro",
    "TipoEvento",
    "decode",
    "encode",
    "nova",
]
