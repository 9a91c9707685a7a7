"""The rich consoles and tables of ``orq``, made on first use.

``orq worker`` goes through the same CLI module as every other command; creating the consoles
lazily means a worker process never imports rich (~3 MiB of its peak RSS).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table


@functools.cache
def out() -> Console:
    from rich.console import Console

    return Console()


@functools.cache
def err() -> Console:
    from rich.console import Console

    return Console(stderr=True)


def wide() -> Console:
    """Piped output (logs, scripts) gets tables wide enough for full ids, not 80 columns."""
    from rich.console import Console

    return out() if out().is_terminal else Console(width=160)


def table(**options: Any) -> Table:
    from rich.table import Table

    return Table(**options)
