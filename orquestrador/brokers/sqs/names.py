"""How the toolkit's queue names, headers and bodies map onto SQS (see the package docstring).

Names. SQS allows letters, digits, ``-`` and ``_`` (at most 80 characters; a FIFO queue's name
ends in ``.fifo``, counted). The toolkit's names are letters, digits, ``-`` and ``_`` with an
optional ``.dlq`` and never end in ``__dlq``, so ``<queue>.dlq`` maps to ``<queue>__dlq`` and
back without ambiguity (as on NATS). A name too long for SQS keeps its first characters and
ends in ``-`` and 16 hex digits of its SHA-256; every queue the toolkit creates carries its
own name in the tag :data:`NAME_TAG`, which is how such a name is read back.

Headers. SQS takes at most 10 message attributes, the toolkit carries any number of headers
(up to ``intake.MAX_HEADERS``): they travel together as one JSON attribute, :data:`HEADERS`,
beside the publisher's message id, :data:`MESSAGE_ID`. String attributes set by a plain SQS
producer (a ``traceparent``, say) read as headers too.

Topics (:mod:`.topics`). A durable subscription named ``<durable>`` (letters, digits, ``-``,
``_``) is the queue ``orq-durable-<durable>``, which reads back as its name; a name too long
for SQS is shortened as queue names are, and read back from the queue's tag
(``topics.DURABLE_TAG``). A live subscription's queue is ``orq-live-`` and 16 random hex
digits. Neither carries :data:`NAME_TAG`: they are no job queues.

Bodies. An SQS body is text of a restricted character set; a body that is not such text (not
UTF-8, or holding control characters) travels base64-encoded, marked by :data:`ENCODING`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from orquestrador.brokers.base import DLQ_SUFFIX, origin_of, validate_queue_name
from orquestrador.brokers.intake import FieldReader
from orquestrador.errors import TopicError
from orquestrador.topics.delivery import validate_durable_name

MAX_NAME = 80
FIFO_SUFFIX = ".fifo"
SQS_DLQ_SUFFIX = "__dlq"
NAME_TAG = "orquestrador-queue"

DURABLE_PREFIX = "orq-durable-"
LIVE_PREFIX = "orq-live-"

HEADERS = "orq-headers"
MESSAGE_ID = "orq-message-id"
ENCODING = "orq-body-encoding"
OURS = (HEADERS, MESSAGE_ID, ENCODING)

# What SQS accepts in a body (its documented character set).
_SQS_TEXT = re.compile("^[\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]*$")
_HASHED = 16


def sqs_name(queue: str, *, fifo: bool = False) -> str:
    """The SQS queue name of toolkit queue ``queue``."""
    validate_queue_name(queue)
    origin = origin_of(queue)
    tail = (SQS_DLQ_SUFFIX if queue.endswith(DLQ_SUFFIX) else "") + (FIFO_SUFFIX if fifo else "")
    room = MAX_NAME - len(tail)
    return (_shortened(origin, room) if len(origin) > room else origin) + tail


def _shortened(name: str, room: int) -> str:
    """``name`` cut to ``room`` characters, the last 17 a dash and a hash of the whole."""
    digest = hashlib.sha256(name.encode()).hexdigest()[:_HASHED]
    return f"{name[: room - _HASHED - 1]}-{digest}"


def queue_name(name: str) -> str | None:
    """The toolkit name of SQS queue ``name`` (None if it cannot be one); a shortened long name
    reads back as itself shortened: its tag holds the real one."""
    if name.endswith(FIFO_SUFFIX):
        name = name[: -len(FIFO_SUFFIX)]
    if name.endswith(SQS_DLQ_SUFFIX):
        name = name[: -len(SQS_DLQ_SUFFIX)] + DLQ_SUFFIX
    try:
        return validate_queue_name(name)
    except ValueError:
        return None


def durable_queue(durable: str) -> str:
    """The SQS queue of durable topic subscription ``durable``."""
    name = DURABLE_PREFIX + validate_durable_name(durable)
    return name if len(name) <= MAX_NAME else _shortened(name, MAX_NAME)


def durable_of(name: str) -> str | None:
    """The durable subscription SQS queue ``name`` belongs to (None if it is no such queue)."""
    rest = name.removeprefix(DURABLE_PREFIX)
    try:
        return validate_durable_name(rest) if rest != name else None
    except TopicError:
        return None


def encode_body(body: bytes) -> tuple[str, bool]:
    """The text SQS carries, and whether it is base64 (a body SQS cannot carry as it is)."""
    try:
        text = bytes(body).decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and _SQS_TEXT.match(text):
        return text, False
    return base64.b64encode(body).decode("ascii"), True


def message_attributes(
    headers: Mapping[str, str] | None, message_id: str | None, base64_body: bool
) -> dict[str, dict[str, str]]:
    """The SQS message attributes carrying headers, id and body encoding (three at most)."""
    attributes: dict[str, dict[str, str]] = {}
    if headers:
        attributes[HEADERS] = {"DataType": "String", "StringValue": json.dumps(dict(headers))}
    if message_id:
        attributes[MESSAGE_ID] = {"DataType": "String", "StringValue": message_id}
    if base64_body:
        attributes[ENCODING] = {"DataType": "String", "StringValue": "base64"}
    return attributes


def _string(attribute: Any) -> Any:
    return attribute.get("StringValue") if isinstance(attribute, dict) else None


def read_body(text: Any, attributes: Mapping[str, Any], reader: FieldReader) -> bytes:
    """The body as published (base64 undone where the publisher marked it)."""
    raw = text.encode("utf-8") if isinstance(text, str) else b""
    if _string(attributes.get(ENCODING)) != "base64":
        return raw
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        reader.problems.append(f"{ENCODING} says base64 but the body is not")
        return raw


def read_headers(attributes: Mapping[str, Any], reader: FieldReader) -> dict[str, str]:
    """The toolkit's headers (the JSON attribute) plus a plain producer's string attributes."""
    headers = reader.headers_json(_raw(attributes.get(HEADERS)), f"attribute {HEADERS}")
    plain = ((k, _string(v)) for k, v in attributes.items() if k not in OURS and _string(v) is not None)
    for key, value in reader.headers(plain, "message attributes").items():
        headers.setdefault(key, value)
    return headers


def read_message_id(attributes: Mapping[str, Any], reader: FieldReader) -> str | None:
    return reader.text(_string(attributes.get(MESSAGE_ID)), f"attribute {MESSAGE_ID}")


def _raw(attribute: Any) -> bytes | None:
    value = _string(attribute)
    return value.encode("utf-8", "replace") if isinstance(value, str) else None


def short_id(value: str, limit: int = 128) -> str:
    """A FIFO group or deduplication id (at most 128 characters of SQS's set) for ``value``."""
    if len(value) <= limit and re.fullmatch(r"[!-~]+", value):
        return value
    return hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()
