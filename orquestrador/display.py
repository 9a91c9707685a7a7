"""Broker and store content made safe to show: bounded, control characters escaped, any depth.

Whatever a command or a widget shows (``orq dlq list``, ``orq queues peek``, ``orq consume``,
``orq trace``, the dashboard, ``rastreio``) came from some publisher: a dead letter can hold JSON
nested thousands deep, megabytes of text or terminal escape sequences. These helpers never raise
on such content; they show it truncated and escaped, so a listing carries on to the next one.
"""

from __future__ import annotations

import json
import reprlib
from typing import Any

MAX_DEPTH = 32  # deeper JSON is shown as text, not as a structure
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 4, 200, 200


def text(value: Any, limit: int = 300) -> str:
    """One line for a person: JSON for structures (``reprlib`` when too deep), escaped, bounded."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "backslashreplace")
    if not isinstance(value, str):
        try:
            value = json.dumps(value, ensure_ascii=False, default=str)
        except (RecursionError, ValueError, TypeError):
            value = _REPR.repr(value)
    return escape(value[: limit + 1], limit)


def escape(value: str, limit: int = 300) -> str:
    """Control and other unprintable characters as ``\\x..`` escapes; ``…`` past ``limit``."""
    cut = len(value) > limit
    value = value[:limit]
    if not value.isprintable():
        value = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in value)
    return value + ("…" if cut else "")


def parsed(body: bytes, limit: int = 4096) -> Any:
    """The JSON a body holds when it is small and shallow enough to show as such; else None."""
    if len(body) > limit:
        return None
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return data if depth(data) <= MAX_DEPTH else None


def depth(value: Any) -> int:
    """How deeply lists and objects nest (without recursion, so any depth is measured)."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        item, level = todo.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            if level > MAX_DEPTH:
                return level
            todo.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


__all__ = ["MAX_DEPTH", "depth", "escape", "parsed", "text"]
