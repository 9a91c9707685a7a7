"""Importing a broker driver without an optional extra it would load for a feature we never use.

Some drivers import an optional package at start whenever it is installed: nats-py imports
aiohttp for a WebSocket transport, redis-py the OpenTelemetry metrics SDK for its own metrics.
A worker pays their memory (11 MiB and 2 MiB, measured) for nothing: the toolkit connects with
``nats://`` / ``tls://`` only and never turns redis-py's metrics on.
"""

from __future__ import annotations

import importlib
import sys


def import_without(module: str, optional: str) -> None:
    """Import ``module`` as if ``optional`` were not installed, unless something imported it.

    Hidden for this one import only (``None`` in ``sys.modules`` is the import system's "not
    installed"): ``optional`` stays importable for everything else, handlers included.
    """
    if optional in sys.modules or module in sys.modules:
        return
    sys.modules[optional] = None  # type: ignore[assignment]
    try:
        importlib.import_module(module)
    finally:
        del sys.modules[optional]
