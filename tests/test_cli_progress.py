"""Long commands (batch publish, dlq replay, purge) show a bar to people and stay clean for scripts."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

from orquestrador import Orquestrador
from orquestrador.brokers import connect
from tests.conftest import broker_url_for
from tests.test_cli_ops import _setup, depths, orq
from tests.workers import ROOT

pytestmark = pytest.mark.nats


def payload_file(tmp_path: Path, count: int) -> Path:
    path = tmp_path / "jobs.jsonl"
    path.write_text("".join(json.dumps({"i": i}) + "\n" for i in range(count)) + "\n")  # a blank line too
    return path


def delete(url: str, queue: str) -> None:
    async def run() -> None:
        broker = await connect(url)
        try:
            await broker.delete(queue)
        finally:
            await broker.close()

    asyncio.run(run())


def on_a_terminal(*args: str) -> tuple[int, str, str]:
    """Run ``orq`` with stderr on a pseudo-terminal (as in a shell), stdout piped."""
    main, secondary = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "orquestrador.cli", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=secondary, env=dict(os.environ))  # fmt: skip
    os.close(secondary)
    assert proc.stdout is not None
    out: list[bytes] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.read()))  # type: ignore[union-attr]
    reader.start()  # stdout may outgrow the pipe while we read the terminal
    err = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        err += chunk
    reader.join(60)
    os.close(main)
    return proc.wait(60), b"".join(out).decode(), err.decode(errors="replace")


def test_batch_publish_from_a_file_for_scripts(nats_url: str, tmp_path: Path):
    alvo = f"lote_{uuid.uuid4().hex[:8]}"
    queue = f"escavador_{alvo}"
    try:
        result = orq("publish", "iniciar_coleta", "--alvo", alvo, "--from-file",
                     str(payload_file(tmp_path, 1200)), "--json", "--broker", nats_url)  # fmt: skip
        assert result.returncode == 0, result.stderr
        rows = [json.loads(line) for line in result.stdout.splitlines()]
        assert len(rows) == 1200 and len({r["message_id"] for r in rows}) == 1200
        assert "\x1b" not in result.stderr and "published 1200 job(s)" in result.stderr
        assert depths(nats_url, queue)[0] == 1200
        with Orquestrador(nats_url) as o:  # the batch is in this directory's store, by its id
            lote = o.lote(rows[0]["lote"])
            assert lote is not None and len(lote) == 1200

        plain = orq("publish", "iniciar_coleta", "-a", alvo, "-f", str(payload_file(tmp_path, 3)),
                    "--broker", nats_url)  # fmt: skip
        assert plain.returncode == 0, plain.stderr
        assert [str(uuid.UUID(line)) for line in plain.stdout.splitlines()] == plain.stdout.split()
        assert len(plain.stdout.split()) == 3
    finally:
        delete(nats_url, queue)


def test_a_bad_line_stops_the_batch_before_anything_is_sent(nats_url: str, tmp_path: Path):
    alvo = f"lote_{uuid.uuid4().hex[:8]}"
    path = tmp_path / "bad.jsonl"
    path.write_text('{"i": 1}\n{"i": 2}\n[3]\n')
    result = orq("publish", "iniciar_coleta", "-a", alvo, "-f", str(path), "--broker", nats_url)
    assert result.returncode == 2
    assert "line 3" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""  # nothing was published


def test_batch_publish_draws_a_bar_on_a_terminal_unless_json(nats_url: str, tmp_path: Path):
    alvo = f"lote_{uuid.uuid4().hex[:8]}"
    path = str(payload_file(tmp_path, 800))
    try:
        code, out, err = on_a_terminal("publish", "iniciar_coleta", "-a", alvo, "-f", path, "-b", nats_url)
        assert code == 0, err
        assert f"publishing to {alvo}" in err and "800/800" in err
        assert len(out.split()) == 800  # the bar never reaches stdout

        code, out, err = on_a_terminal("publish", "iniciar_coleta", "-a", alvo, "-f", path, "--json",
                                       "-b", nats_url)  # fmt: skip
        assert code == 0, err
        assert "publishing to" not in err and "\x1b" not in err
        assert len([json.loads(line) for line in out.splitlines()]) == 800
    finally:
        delete(nats_url, f"escavador_{alvo}")


def test_replay_and_purge_of_many_messages_stay_machine_readable(request: pytest.FixtureRequest):
    url = broker_url_for("nats", request)
    queue = f"t_prog_{uuid.uuid4().hex[:10]}"
    ids = [f"m{i}-{uuid.uuid4().hex[:6]}" for i in range(300)]
    try:
        asyncio.run(_setup(url, queue, ids, 250, "boom"))
        replayed = orq("dlq", "replay", queue, "--broker", url)
        assert replayed.returncode == 0, replayed.stderr
        # At-least-once: a dead letter whose ack was lost may move twice, so not "== 250".
        moved = re.fullmatch(rf"replayed (\d+) dead letter\(s\) onto {queue}\n", replayed.stdout)
        assert moved is not None and int(moved[1]) >= 250, replayed.stdout
        assert "\x1b" not in replayed.stderr
        purged = orq("queues", "purge", queue, "--yes", "--broker", url)
        assert purged.returncode == 0, purged.stderr
        assert purged.stdout == f"dropped {50 + int(moved[1])} message(s) from {queue}\n"
        assert "\x1b" not in purged.stderr and "purging" not in purged.stderr
    finally:
        delete(url, queue)
