"""Wire format v1: the JSON envelope every producer and worker exchanges.

The four fields of the interface note (``correlation_id``, ``tipo_evento``, ``payload``,
``timestamp``) are the whole contract; a message published by hand with plain pika or nats-py
is a valid job. Our own fields are optional on read, and fields we do not know are kept when an
envelope is re-encoded, so newer producers can talk to older workers.

The envelope is a msgspec ``Struct``, not a pydantic model: every worker decodes envelopes, and
pydantic (its import plus the first model class) cost each worker process 8.8 MiB of its ~51,
msgspec 1.9. What it accepts is what the pydantic model accepted, with these differences:

- one reason per refused envelope (the first problem found), not up to three;
- times: RFC 3339 with ``T`` or a space, numbers of seconds (of milliseconds above 2e10, as
  pydantic read them) and other ISO 8601 forms Python reads (``2025-10-14``,
  ``2025-10-14T12:00``, basic ``20251014T120000Z``) are accepted; ``tentativa`` and ``versao``
  take integral floats and numeric strings, not ``true``;
- ``NaN``, ``Infinity`` and numbers beyond a double (``1e400``) are not JSON and are refused
  (pydantic read them as null);
- on encode, ``bytes`` in a payload become base64 (pydantic wrote them as UTF-8 text, or failed),
  ``timedelta`` ``PT90S`` (was ``PT1M30S``); paths and pydantic models are written as before.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import sys
import threading
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar, cast

import msgspec

from orquestrador.errors import EnvelopeError, PayloadTooLarge
from orquestrador.vocabulary import RESULTADO_DE, TIPOS_EVENTO, TipoEvento, is_request

DEFAULT_MAX_BYTES = 1024 * 1024
DEFAULT_RESULTS_QUEUE = "orquestrador_resultados"
VERSAO = 1
# pydantic's JSON parser refused deeper documents. msgspec's own bound is the interpreter's
# recursion limit less the caller's stack: without this one, whether a 900-deep payload is read
# would depend on where decode() is called from (the test and the worker disagreed).
MAX_DEPTH = 200
NOT_AN_ENVELOPE = (
    "not an envelope: expected a JSON object with correlation_id, tipo_evento, payload, timestamp"
)

_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
_T = TypeVar("_T", "Envelope", "Erro")


class _OpenMeta(msgspec.StructMeta):
    """Keyword construction as the pydantic models had it (``extra="allow"``): the values are
    checked, so a bad envelope fails where it is made rather than in a worker, and keywords
    that are not fields are kept in ``extras`` (a result carries ``worker``, ``duracao``…)."""

    def __call__(cls, *args: Any, **fields: Any) -> Any:
        if args:  # positional: a copy rebuilt field by field, already checked
            return super().__call__(*args, **fields)
        return _checked(cast(Any, cls), fields, keywords=True)


class Erro(msgspec.Struct, kw_only=True, metaclass=_OpenMeta):
    """Why a job failed: the exception type and its message (plus any extra detail)."""

    tipo: str
    mensagem: str
    # Unknown fields (a traceback, the dead-letter queue…), written back on encode.
    extras: dict[str, Any] = msgspec.field(default_factory=dict)


class Envelope(msgspec.Struct, kw_only=True, frozen=True, metaclass=_OpenMeta):
    """One message of a job chain. Immutable so a delivered envelope is never edited in place."""

    correlation_id: _Id
    tipo_evento: TipoEvento
    payload: dict[str, Any]
    timestamp: datetime
    message_id: _Id | None = None
    causation_id: str | None = None
    alvo: str | None = None
    responder_para: str | None = None
    tentativa: Annotated[int, msgspec.Meta(ge=1)] | None = None
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    versao: int = VERSAO
    status: Literal["ok", "erro"] | None = None
    erro: Erro | None = None
    # When and in what order (orquestrador.job_options): absent unless a launch set them.
    prioridade: Annotated[int, msgspec.Meta(
        ge=0, le=9,
        description="0 (default) to 9, 9 the most urgent: under a backlog higher priorities start first",
    )] | None = None  # fmt: skip
    executar_em: Annotated[datetime, msgspec.Meta(
        description="the job is not started before this time (UTC)",
    )] | None = None  # fmt: skip
    expira_em: Annotated[datetime, msgspec.Meta(
        description="a job not started by this time (UTC) is never run: dead-lettered with reason "
        "'expired' and answered with status erro",
    )] | None = None  # fmt: skip
    # Fields this version does not know, kept for forward compatibility: written back on encode.
    extras: dict[str, Any] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        # A naive time is ambiguous across machines; the contract is UTC.
        for name in _TIMES:
            value = getattr(self, name)
            if value is not None and value.tzinfo is not UTC:
                try:
                    utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
                except OverflowError:  # 0001-01-01T00:00+01:00 has no UTC time
                    raise ValueError(f"{name}: out of range in UTC") from None
                msgspec.structs.force_setattr(self, name, utc)

    @property
    def is_request(self) -> bool:
        return is_request(self.tipo_evento)

    def with_changes(self, **changes: Any) -> Envelope:
        """A copy with ``changes``, unchecked (as pydantic's ``model_copy``); names that are not
        fields go to ``extras``."""
        unknown = [k for k in changes if k not in _FIELDS[Envelope] and k != "extras"]
        if unknown:
            changes["extras"] = {**changes.get("extras", self.extras), **{k: changes.pop(k) for k in unknown}}
        return msgspec.structs.replace(self, **changes)


_TIMES = ("timestamp", "executar_em", "expira_em")
_FIELDS: dict[type[Envelope | Erro], frozenset[str]] = {
    cls: frozenset(cls.__struct_fields__) - {"extras"} for cls in (Erro, Envelope)
}
_CHOICES = {"tipo_evento": TIPOS_EVENTO, "status": ("ok", "erro")}


def _checked(cls: type[_T], data: dict[str, Any], *, keywords: bool = False, at: str = "") -> _T:
    """``data`` (ours to change) as a ``cls``, its unknown fields in ``extras``; a refusal is an
    :class:`EnvelopeError` with one line naming the field, never its value.

    In keywords ``extras=`` is the dict of unknown fields; on the wire it is one of them.
    """
    names = _FIELDS[cls]
    extras = data.pop("extras", None) if keywords else None
    if data.keys() - names:
        unknown = {k: data[k] for k in data if k not in names}
        extras = unknown if extras is None else {**extras, **unknown}
    if extras is not None:
        data["extras"] = extras
    erro = data.get("erro")
    if cls is Envelope and isinstance(erro, dict):
        data["erro"] = _checked(Erro, dict(erro), at=f"{at}erro.")
    prioridade = data.get("prioridade")
    if prioridade is not None and type(prioridade) is not int:  # strict: not 5.0, "5" nor true
        raise _invalid(cls, at, f"prioridade: Expected `int`, got `{_json_type(prioridade)}`")
    for _ in range(len(_TIMES) + 1):
        try:
            return msgspec.convert(data, cls, strict=False)
        except msgspec.ValidationError as exc:
            field, message = _where(str(exc))
            lenient = _lenient_time(data.get(field)) if field in _TIMES and cls is Envelope else None
            if lenient is None:
                raise _invalid(cls, at, f"{field}: {message}" if field else message) from None
            data[field] = lenient
    raise AssertionError("unreachable: each time field is replaced at most once")


def _invalid(cls: type[Envelope | Erro], at: str, reason: str) -> EnvelopeError:
    what = "erro" if cls is Erro and not at else "envelope"  # an erro made alone, or in an envelope
    return EnvelopeError(f"not a valid {what}: {at}{reason}")


_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$\.?(?P<path>[^`]*)`)?$", re.S)
_MISSING = re.compile(r"^Object missing required field `(?P<name>[^`]*)`$")


def _where(text: str) -> tuple[str, str]:
    """msgspec's "<message> - at `$.path`" as (path, message), with no input value in it."""
    found = _AT.match(text)
    message, path = (found["msg"].strip(), found["path"] or "") if found else (text, "")
    if missing := _MISSING.match(message):
        return ".".join(p for p in (path, missing["name"]) if p), "Field required"
    if message.startswith("Invalid enum value"):  # it quotes the value: a payload may hold secrets
        choices = _CHOICES.get(path)
        message = "Input should be one of " + ", ".join(map(repr, choices)) if choices else "Invalid value"
    return path, message


def _json_type(value: object) -> str:
    return {bool: "bool", str: "str", float: "float", list: "array", dict: "object"}.get(type(value), "int")


def _lenient_time(value: object) -> datetime | None:
    """Times pydantic read and msgspec does not: milliseconds, ``2025-10-14``, ``12:00``…"""
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:  # pydantic's rule: beyond 2e10 seconds (year 2603) it is milliseconds
            return datetime.fromtimestamp(value / 1000 if abs(value) > 2e10 else value, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    return None


def to_dict(obj: Envelope | Erro) -> dict[str, Any]:
    """As on the wire: fields set (``None`` ones left out), then the unknown ones."""
    out = {k: v for k, v in msgspec.structs.asdict(obj).items() if v is not None}
    extras = out.pop("extras")
    if "erro" in out:
        out["erro"] = to_dict(out["erro"])
    if extras:
        out.update(extras)
    return out


def to_json(obj: Envelope | Erro) -> str:
    """The wire JSON as text, without :func:`encode`'s size limit (for the store)."""
    return _encoder.encode(to_dict(obj)).decode()


def from_dict(data: Mapping[str, Any]) -> Envelope:
    """An envelope from decoded JSON, checked as :func:`decode` checks it (its ``message_id``
    left as given); :class:`EnvelopeError` if it is not one."""
    return _checked(Envelope, dict(data))


def _unsupported(value: Any) -> Any:
    """What msgspec cannot write but pydantic did: paths, and pydantic models in a payload."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if "pydantic" in sys.modules and hasattr(value, "model_dump"):  # never import it for this
        return value.model_dump(mode="json")
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


_encoder = msgspec.json.Encoder(enc_hook=_unsupported)
_decoder = msgspec.json.Decoder()


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
    body = _encoder.encode(to_dict(envelope))
    if len(body) > max_bytes:
        raise PayloadTooLarge(
            f"envelope of {envelope.tipo_evento} for {envelope.alvo or '?'} is "
            f"{_size(len(body))}, over the {_size(max_bytes)} limit: send a reference "
            "(URL, file path) instead of the data, or raise max_message_bytes"
        )
    return body


def decode(body: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Envelope:
    """Read wire bytes; any problem becomes :class:`EnvelopeError` with a one-line reason.

    JSON is read into plain values first, not straight into the struct: msgspec would drop the
    fields we do not know, and they must survive a re-encode.
    """
    if len(body) > max_bytes:
        raise PayloadTooLarge(f"message is {_size(len(body))}, over the {_size(max_bytes)} limit")
    try:
        data = _decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise EnvelopeError(f"not valid JSON: {exc}") from None
    except RecursionError:
        raise EnvelopeError(f"not valid JSON: nested more than {MAX_DEPTH} levels deep") from None
    if not isinstance(data, dict):
        raise EnvelopeError(NOT_AN_ENVELOPE)
    if body.count(b"{") + body.count(b"[") > MAX_DEPTH and _deeper_than(data, MAX_DEPTH):
        raise EnvelopeError(f"not valid JSON: nested more than {MAX_DEPTH} levels deep")
    envelope = _checked(Envelope, data)
    if envelope.message_id is None:
        # Hand-published messages have no id; derive a stable one so redeliveries dedupe.
        envelope = msgspec.structs.replace(envelope, message_id=content_id(body))
    return envelope


def _deeper_than(data: object, limit: int) -> bool:
    """Whether objects and arrays nest more than ``limit`` levels (without recursing ourselves)."""
    level: list[Any] = [data]
    for _ in range(limit):
        below: list[Any] = []
        for node in level:
            for child in node.values() if type(node) is dict else node:
                if type(child) is dict or type(child) is list:
                    below.append(child)
        if not below:
            return False
        level = below
    return True


def content_id(body: bytes) -> str:
    return str(uuid.UUID(bytes=hashlib.sha256(body).digest()[:16], version=5))


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
    "from_dict",
    "nova",
    "to_dict",
    "to_json",
]
