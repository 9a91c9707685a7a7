"""``orq publish --from-file``: launch one job per line of a JSON-lines file, as one batch.

The file is read twice (check every line, then publish in pipelined chunks) so a bad line stops
the launch before anything is sent and memory stays flat however big the file; stdin (``-``) is
read once into memory. stdout gets one line per job, written as each chunk is confirmed, so a
script can follow a launch that stops half-way.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orquestrador.cli.progress import bar
from orquestrador.errors import ConfigError

if TYPE_CHECKING:
    from orquestrador.job_options import Timing


def json_object(text: str, where: str, hint: str) -> dict[str, Any]:
    """A payload given as text: a JSON object, else an error naming ``where`` it came from."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{where} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where} is not a JSON object: {hint}")
    return data


def _parse(lines: Iterator[str], source: str) -> Iterator[dict[str, Any]]:
    for number, line in enumerate(lines, 1):
        if line.strip():
            yield json_object(line, f"line {number} of {source}", "give one payload per line")


def _payloads(path: str) -> tuple[Any, int]:
    """The payloads (re-iterable) and how many there are, every line checked."""
    if path == "-":
        items = list(_parse(iter(sys.stdin), "stdin"))
        return items, len(items)
    file = Path(path)
    try:
        with file.open(encoding="utf-8") as handle:
            count = sum(1 for _ in _parse(handle, path))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None

    class Lines:
        def __iter__(self) -> Iterator[dict[str, Any]]:
            with file.open(encoding="utf-8") as handle:
                yield from _parse(handle, path)

    return Lines(), count


def publish_file(
    tipo: str, alvo: str, path: str, broker: str | None, *, as_json: bool, timing: Timing | None = None
) -> int:
    """Publish every payload of ``path``; returns how many jobs went out."""
    from orquestrador import envelope as wire
    from orquestrador.orchestrator import AsyncOrquestrador

    payloads, total = _payloads(path)
    lote = wire.new_id()

    def emit(envelopes: list[Any]) -> None:
        for env in envelopes:
            if as_json:
                row = {"correlation_id": env.correlation_id, "message_id": env.message_id, "lote": lote}
                sys.stdout.write(json.dumps(row) + "\n")
            else:
                sys.stdout.write(env.correlation_id + "\n")
        sys.stdout.flush()

    async def run() -> int:
        core = AsyncOrquestrador(broker)
        await core.start()
        try:
            with bar(f"publishing to {alvo}", total, quiet=as_json) as advance:
                return await core.lancar_lote(
                    tipo,  # type: ignore[arg-type]
                    alvo,
                    payloads,
                    on_progress=advance,
                    on_sent=emit,
                    lote=lote,
                    **(timing or {}),
                )
        finally:
            await core.close()

    sent = asyncio.run(run())
    print(f"published {sent} job(s) to {alvo} (lote {lote})", file=sys.stderr)
    return sent
