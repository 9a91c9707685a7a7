"""Progress bars of long ``orq`` commands: on a terminal only, always on stderr.

A script that pipes ``orq`` (or passes ``--json``) gets its stdout untouched and no escape codes
on stderr; a person at a terminal sees how far a long publish, replay or purge got.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator


def shown(quiet: bool = False) -> bool:
    """Whether a bar may be drawn: stderr is a terminal and the user did not ask for machine output."""
    return not quiet and sys.stderr.isatty()


@contextlib.contextmanager
def bar(label: str, total: int | None, *, quiet: bool = False) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``; ``total`` None draws an open-ended bar (e.g. jobs read from stdin)."""
    if not shown(quiet):
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    # redirect_stdout=False: stdout (e.g. one id per job) must go on to the pipe, not above the bar.
    with Progress(*columns, console=Console(stderr=True), transient=True, redirect_stdout=False) as progress:
        task = progress.add_task(label, total=total)
        yield lambda n: progress.advance(task, n)


@contextlib.contextmanager
def spinner(label: str, *, quiet: bool = False) -> Iterator[None]:
    """For one long broker call that reports no progress of its own (a purge)."""
    if not shown(quiet):
        yield
        return
    from rich.console import Console

    with Console(stderr=True).status(label):
        yield
