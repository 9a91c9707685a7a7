"""The public surface is what ``__all__`` says, and every name in it exists."""

from __future__ import annotations

import orquestrador
import orquestrador.brokers
import orquestrador.envelope
import orquestrador.errors


def test_all_names_exist_and_nothing_public_is_missing():
    for module in (orquestrador, orquestrador.brokers, orquestrador.envelope, orquestrador.errors):
        missing = [name for name in module.__all__ if not hasattr(module, name)]
        assert missing == [], f"{module.__name__}.__all__ names {missing}"
    exported = set(orquestrador.__all__)
    for name in ("Orquestrador", "AsyncOrquestrador", "Job", "Lote", "escavador", "executor",
                 "Retry", "PermanentFailure", "Worker", "OrquestradorError"):  # fmt: skip
        assert name in exported


def test_every_error_is_an_orquestrador_error_except_handler_signals():
    for name in orquestrador.errors.__all__:
        cls = getattr(orquestrador.errors, name)
        if issubclass(cls, orquestrador.errors.HandlerSignal):
            continue
        assert issubclass(cls, orquestrador.errors.OrquestradorError), name
