"""``orq store``: the SQLite store of this directory, and pruning it by age or count.

The store module itself is imported only when the command runs.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from typing import Annotated

import typer

from orquestrador.cli import console
from orquestrador.cli.options import YesOpt, existing_store
from orquestrador.errors import OrquestradorError
from orquestrador.settings import parse_duration
from orquestrador.store.retention import ENV_RETENTION_AGE, ENV_RETENTION_JOBS, Retencao

_AGE_HELP = f"Delete finished jobs older than this (7d, 12h, 3600); default ${ENV_RETENTION_AGE}."
_KEEP_HELP = f"Keep only the newest N finished jobs; default ${ENV_RETENTION_JOBS}."

app = typer.Typer(name="store", help="The job store of this directory (ORQ_HOME).", no_args_is_help=True)


@app.command("prune")
def prune(
    older_than: Annotated[
        str | None,
        typer.Option("--older-than", help=_AGE_HELP),
    ] = None,
    keep: Annotated[
        int | None,
        typer.Option("--keep", min=1, help=_KEEP_HELP),
    ] = None,
    yes: YesOpt = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Delete finished jobs (with their envelopes, events and parts); unfinished chains stay whole."""
    from orquestrador.store import Store

    path = existing_store()
    if older_than is None and keep is None:
        policy = Retencao.from_env()
    else:
        policy = Retencao(parse_duration(older_than, "--older-than") if older_than else None, keep)
    if not policy.active:
        raise OrquestradorError(
            f"nothing to prune by: give --older-than and/or --keep (or set {ENV_RETENTION_AGE} / "
            f"{ENV_RETENTION_JOBS})"
        )
    if not yes and not _can_ask():
        raise OrquestradorError(
            "refusing to prune without confirmation: no terminal to ask on; pass --yes to prune from a script"
        )
    age = None if policy.max_age is None else float(policy.max_age)
    store = Store(path)
    try:
        count = store.prunable(age, policy.max_jobs) if not yes else 0
        if count and not typer.confirm(f"Delete {count} finished jobs and their records from {path}?"):
            console.err().print("nothing pruned")
            raise typer.Exit(1)
        _report(as_json, store.prune(age, policy.max_jobs), str(path))
    finally:
        store.close()


def _can_ask() -> bool:
    return sys.stdin.isatty()


def _report(as_json: bool, report: object, path: str) -> None:
    data = asdict(report)  # type: ignore[call-overload]
    if as_json:
        print(json.dumps({"store": path, **data}, indent=2))
        return
    out = console.out()
    out.print(
        f"pruned {data['jobs']} jobs, {data['envelopes']} envelopes, {data['eventos']} events, "
        f"{data['partes']} parts from {path}",
        markup=False, highlight=False,
    )  # fmt: skip
    if data["protected"]:
        out.print(f"kept {data['protected']} finished jobs of chains still running", highlight=False)
    out.print(f"{data['reusable_bytes']} bytes free for reuse (VACUUM returns them to disk)", highlight=False)
