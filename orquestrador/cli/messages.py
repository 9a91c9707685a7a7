"""How ``orq`` shows a message from the broker: the envelope fields a person looks for.

Everything comes from some publisher: shown truncated and escaped (control characters as
``\\x..``, JSON of any depth), so a hostile message cannot stop a listing or write to the terminal.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from orquestrador import display
from orquestrador.brokers.base import DLQ_AT, DLQ_ATTEMPTS, DLQ_ERROR_TYPE, DLQ_REASON, Message
from orquestrador.cli import console

_PEEK_FIELDS = ("message_id", "tipo_evento", "correlation_id", "alvo")


def opt(value: int | None) -> str:
    return "-" if value is None else str(value)


def escape(body: bytes, limit: int = 120) -> str:
    return display.text(body[: limit + 4], limit)


def _shown(value: Any, limit: int = 200) -> str | None:
    """A field of broker content as a person may see it: text, escaped, bounded (None stays)."""
    return None if value is None else display.text(value, limit)


def describe(body: bytes, headers: dict[str, str], message_id: str = "") -> dict[str, Any]:
    """The envelope fields a person looks for, or the raw bytes when the body is not one."""
    out: dict[str, Any] = {field: None for field in _PEEK_FIELDS}
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        data = None
    if isinstance(data, dict):
        for field in _PEEK_FIELDS:
            out[field] = _shown(data.get(field))
        out["raw"] = None
    else:
        out["raw"] = escape(body)
    if out["message_id"] is None and message_id:
        out["message_id"] = _shown(message_id)
    out["reason"] = _shown(headers.get(DLQ_REASON), 2000)
    out["error_type"] = _shown(headers.get(DLQ_ERROR_TYPE))
    attempts = headers.get(DLQ_ATTEMPTS)
    out["attempts"] = int(attempts) if attempts and attempts.isascii() and attempts.isdigit() and \
        len(attempts) < 10 else _shown(attempts)  # fmt: skip
    out["dead_lettered_at"] = _shown(headers.get(DLQ_AT))
    out["size"] = len(body)
    return out


def message_dict(m: Message) -> dict[str, Any]:
    return describe(m.body, m.headers)


def body_text(body: bytes) -> Any:
    data = display.parsed(body)  # small and shallow JSON as a structure; anything else as text
    return escape(body, 4096) if data is None else data


def message_table(title: str, rows: Sequence[dict[str, Any]], *, dead: bool | None = None) -> None:
    show_dead = any(r["reason"] or r["attempts"] for r in rows) if dead is None else dead
    table = console.table(title=title)
    columns = ["message_id", "tipo_evento", "correlation_id", "alvo"]
    if show_dead:
        columns += ["reason", "error_type", "attempts"]
    for column in columns:
        table.add_column(column, overflow="fold")
    for r in rows:
        if r.get("raw") is not None:
            cells = [r["message_id"] or "", f"raw: {r['raw']}", "", ""]
        else:
            cells = [r[c] or "" for c in ("message_id", "tipo_evento", "correlation_id", "alvo")]
        if show_dead:
            cells += [r["reason"] or "", r["error_type"] or "", opt(r["attempts"])]
        table.add_row(*[str(c) for c in cells])
    console.wide().print(table, markup=False)
    if not rows:
        console.err().print("(empty)")
