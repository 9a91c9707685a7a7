"""The comando executor runs real programs, never a shell, and only the allow-listed ones."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from executores import comando
from executores.comando import ComandoFalhou, executar_comando
from orquestrador import Contexto, PermanentFailure, Retry
from orquestrador.settings import ENV_COMANDO_MAX_BYTES, ENV_COMANDO_MAX_TIMEOUT


def ctx() -> Contexto:
    return Contexto("c", "m", 1, "comando", logging.LoggerAdapter(logging.getLogger("t"), {}))


@pytest.fixture(autouse=True)
def _allow(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    for var in (
        comando.ENV_ALLOW,
        comando.ENV_PATH,
        comando.ENV_ENV_ALLOW,
        ENV_COMANDO_MAX_BYTES,
        ENV_COMANDO_MAX_TIMEOUT,
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(comando.ENV_ALLOW, "echo, wc,sleep,cat,seq,env")
    yield
    comando.revogar(*comando.permitidos())


def alive(pid: int) -> bool:
    """Running (a zombie nobody reaped yet counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def test_runs_a_program_with_its_arguments_and_reports_the_result(tmp_path: Path):
    (tmp_path / "x.txt").write_text("um\ndois\ntrês\n")
    result = await executar_comando({"programa": "wc", "args": ["-l", "x.txt"], "cwd": str(tmp_path)}, ctx())
    assert result["codigo"] == 0
    assert result["stdout"].split() == ["3", "x.txt"]
    assert result["stderr"] == ""
    assert result["truncado"] is False
    assert result["programa"] == "/usr/bin/wc" or result["programa"].endswith("/wc")
    assert 0 <= result["duracao"] < 10


async def test_stdin_text_reaches_the_program():
    result = await executar_comando({"programa": "wc", "args": ["-w"], "stdin": "a b c d\n"}, ctx())
    assert result["stdout"].strip() == "4"


async def test_shell_syntax_in_arguments_is_just_text(tmp_path: Path):
    marker = tmp_path / "pwned"
    args = [
        "; rm -rf /tmp/x",
        f"; touch {marker}",
        f"$(touch {marker})",
        f"`touch {marker}`",
        f"| touch {marker}",
        f"&& touch {marker}",
        "../../bin/sh",
        "*",
    ]
    result = await executar_comando({"programa": "echo", "args": args, "cwd": str(tmp_path)}, ctx())
    assert result["stdout"] == " ".join(args) + "\n"
    assert not marker.exists()


@pytest.mark.parametrize(
    "programa",
    ["echo; touch {m}", "echo $(touch {m})", "`touch {m}`", "sh", "/bin/sh", "/usr/bin/sh", "bash",
     "../bin/sh", "../../usr/bin/echo", "./echo", "bin/echo", "/usr/bin/../bin/echo", "/usr/bin//echo",
     "", " ", None, ["echo"], "ech\0o"],
)  # fmt: skip
async def test_programs_not_on_the_list_or_path_tricks_are_refused(programa: object, tmp_path: Path):
    marker = tmp_path / "pwned"
    if isinstance(programa, str):
        programa = programa.format(m=marker)
    with pytest.raises(PermanentFailure) as info:
        await executar_comando({"programa": programa, "args": [f"$(touch {marker})"]}, ctx())
    if isinstance(programa, str) and programa.strip() and "\0" not in programa:
        assert comando.ENV_ALLOW in str(info.value)
    assert not marker.exists()


async def test_a_name_allows_its_one_resolved_path_not_another_spelling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    echo = comando.resolver("echo")
    (bindir / "eco").symlink_to(echo)
    monkeypatch.setenv(comando.ENV_PATH, f"relativo:{bindir}")  # relative PATH entries are ignored
    monkeypatch.setenv(comando.ENV_ALLOW, "eco")
    result = await executar_comando({"programa": "eco", "args": ["oi"]}, ctx())
    assert result == {**result, "stdout": "oi\n", "programa": str(bindir / "eco")}
    assert (await executar_comando({"programa": str(bindir / "eco"), "args": ["x"]}, ctx()))["codigo"] == 0
    for other in (echo, "echo", f"{bindir}/../bin/eco"):  # the same file, but not the listed path
        with pytest.raises(PermanentFailure, match=comando.ENV_ALLOW):
            await executar_comando({"programa": other}, ctx())


async def test_sh_runs_only_when_listed_explicitly():
    payload = {"programa": "sh", "args": ["-c", "echo $((6 * 7))"]}
    with pytest.raises(PermanentFailure, match=comando.ENV_ALLOW):
        await executar_comando(payload, ctx())
    comando.permitir("sh")
    assert (await executar_comando(payload, ctx()))["stdout"] == "42\n"


async def test_absolute_paths_on_the_list_are_allowed_as_written(monkeypatch: pytest.MonkeyPatch):
    echo = comando.resolver("echo")
    monkeypatch.setenv(comando.ENV_ALLOW, echo)
    assert (await executar_comando({"programa": echo, "args": ["ok"]}, ctx()))["stdout"] == "ok\n"
    assert (await executar_comando({"programa": "echo", "args": ["ok"]}, ctx()))["stdout"] == "ok\n"


@pytest.mark.parametrize("args", ["-l x.txt", ["-l", 3], [None], {"a": 1}, ["a\0b"]])
async def test_arguments_must_be_a_list_of_strings(args: object):
    with pytest.raises(PermanentFailure, match="args"):
        await executar_comando({"programa": "wc", "args": args}, ctx())


async def test_unknown_payload_keys_are_refused():
    with pytest.raises(PermanentFailure, match="unknown payload keys"):
        await executar_comando({"programa": "echo", "arg": ["x"]}, ctx())


async def test_timeout_kills_the_whole_process_group_and_fails_permanently():
    comando.permitir("sh")
    inicio = time.monotonic()
    with pytest.raises(PermanentFailure, match=r"did not finish within 0\.5s") as info:
        await executar_comando(
            {"programa": "sh", "args": ["-c", "sleep 60 & echo $! >&2; sleep 60"], "timeout": 0.5}, ctx()
        )
    assert time.monotonic() - inicio < 5
    background = int(str(info.value).split("stderr so far: ")[1].strip("'\"").split("\\n")[0])
    await asyncio.sleep(0.2)
    assert not alive(background)


async def test_a_hanging_sleep_is_killed_within_the_timeout():
    inicio = time.monotonic()
    with pytest.raises(PermanentFailure, match="not retried"):
        await executar_comando({"programa": "sleep", "args": ["60"], "timeout": 1}, ctx())
    assert time.monotonic() - inicio < 3


async def test_background_children_end_with_the_program():
    comando.permitir("sh")
    inicio = time.monotonic()
    result = await executar_comando({"programa": "sh", "args": ["-c", "sleep 60 & echo $!"]}, ctx())
    assert time.monotonic() - inicio < 5  # not held by the child keeping stdout open
    await asyncio.sleep(0.2)
    assert not alive(int(result["stdout"]))


async def test_output_is_capped_and_flagged_while_the_program_runs_to_the_end():
    result = await executar_comando({"programa": "seq", "args": ["1", "200000"], "max_bytes": 1000}, ctx())
    assert result["codigo"] == 0
    assert result["truncado"] is True
    assert len(result["stdout"].encode()) == 1000
    assert result["stdout"].startswith("1\n2\n3\n")
    small = await executar_comando({"programa": "seq", "args": ["3"], "max_bytes": 1000}, ctx())
    assert small["truncado"] is False


async def test_default_cap_applies_to_big_outputs():
    result = await executar_comando({"programa": "seq", "args": ["1", "100000"]}, ctx())
    assert result["truncado"] is True
    assert len(result["stdout"]) == comando.DEFAULT_MAX_BYTES


async def test_a_non_zero_exit_is_a_result_unless_asked_to_fail(tmp_path: Path):
    payload = {"programa": "wc", "args": ["nao-existe.txt"], "cwd": str(tmp_path)}
    result = await executar_comando(payload, ctx())
    assert result["codigo"] != 0
    assert "nao-existe.txt" in result["stderr"]
    with pytest.raises(ComandoFalhou, match="exited with code") as info:
        await executar_comando({**payload, "falhar_se_codigo_diferente_de_zero": True}, ctx())
    assert not isinstance(info.value, PermanentFailure)  # ordinary error: the runtime retries it
    assert info.value.codigo == result["codigo"]


async def test_the_workers_environment_is_not_inherited(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ORQ_BROKER_URL", "nats://user:segredo@127.0.0.1:4222")
    monkeypatch.setenv("SEGREDO", "nao-vaza")
    result = await executar_comando({"programa": "env"}, ctx())
    names = {line.split("=", 1)[0] for line in result["stdout"].splitlines()}
    assert names == {"PATH", "LANG"}
    assert "segredo" not in result["stdout"]
    assert f"PATH={comando.caminho()}\n" in result["stdout"]


async def test_payload_env_needs_its_own_allow_list(monkeypatch: pytest.MonkeyPatch):
    payload = {"programa": "env", "env": {"TZ": "UTC"}}
    with pytest.raises(PermanentFailure, match=comando.ENV_ENV_ALLOW):
        await executar_comando(payload, ctx())
    monkeypatch.setenv(comando.ENV_ENV_ALLOW, "TZ,PATH,LD_PRELOAD")
    assert "TZ=UTC\n" in (await executar_comando(payload, ctx()))["stdout"]
    for name in ("PATH", "LD_PRELOAD"):
        with pytest.raises(PermanentFailure, match="never"):
            await executar_comando({"programa": "env", "env": {name: "/tmp"}}, ctx())


@pytest.mark.parametrize(
    "extra",
    [{"timeout": 0}, {"timeout": -1}, {"timeout": "30"}, {"timeout": True}, {"timeout": 10**6},
     {"max_bytes": 0}, {"max_bytes": 10**400}, {"timeout": float("nan")}, {"cwd": "/nao/existe"},
     {"cwd": "/tmp\0x"}, {"stdin": 3}, {"falhar_se_codigo_diferente_de_zero": "sim"},
     {"env": ["A=1"]}],
)  # fmt: skip
async def test_bad_options_fail_permanently(extra: dict[str, object]):
    with pytest.raises(PermanentFailure):
        await executar_comando({"programa": "echo", **extra}, ctx())


async def test_worker_shutdown_kills_the_program_and_releases_the_job():
    contexto = ctx()
    task = asyncio.create_task(executar_comando({"programa": "sleep", "args": ["60"]}, contexto))
    await asyncio.sleep(0.3)
    inicio = time.monotonic()
    contexto.cancelado.set()
    with pytest.raises(Retry, match="shutting down"):
        await task
    assert time.monotonic() - inicio < 3


async def test_a_cancelled_job_kills_its_program(tmp_path: Path):
    comando.permitir("sh")
    pidfile = tmp_path / "pid"
    payload = {"programa": "sh", "args": ["-c", f"echo $$ > {pidfile}; exec sleep 60"]}
    task = asyncio.create_task(executar_comando(payload, ctx()))
    for _ in range(100):
        if pidfile.exists() and pidfile.read_text().strip():
            break
        await asyncio.sleep(0.05)
    pid = int(pidfile.read_text())
    assert alive(pid)
    task.cancel()  # what the runtime does on its job timeout or at the end of a drain
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.3)
    assert not alive(pid)


# -- nothing the job started outlives it ---------------------------------------------------


def zumbis() -> set[int]:
    """This process's children that exited and were never reaped."""
    eu = str(os.getpid())
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            campos = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if campos[1] == eu and campos[0] == "Z":
            found.add(int(stat.parent.name))
    return found


FUGAS = {
    # a child that left the program's session and process group
    "setsid": "setsid sleep 60 >/dev/null 2>&1 & echo $!",
    # a daemon: its parent exits at once, so it is an orphan while the program still runs
    "daemon": "sh -c 'setsid sleep 60 >/dev/null 2>&1 & echo $!'; sleep 0.3",
}


@pytest.mark.skipif(not comando.CEIFADOR, reason="the reaper needs Linux (PR_SET_CHILD_SUBREAPER)")
@pytest.mark.parametrize("fuga", list(FUGAS))
async def test_processes_that_left_the_group_end_when_the_program_exits(fuga: str):
    comando.permitir("sh")
    antes = zumbis()
    result = await executar_comando({"programa": "sh", "args": ["-c", FUGAS[fuga]]}, ctx())
    assert result["codigo"] == 0
    pid = int(result["stdout"])
    await asyncio.sleep(0.2)
    assert not alive(pid)
    assert zumbis() <= antes  # and nothing is left unreaped


@pytest.mark.skipif(not comando.CEIFADOR, reason="the reaper needs Linux (PR_SET_CHILD_SUBREAPER)")
@pytest.mark.parametrize("fuga", list(FUGAS))
async def test_processes_that_left_the_group_end_on_timeout(fuga: str):
    comando.permitir("sh")
    with pytest.raises(PermanentFailure, match="did not finish") as info:
        await executar_comando(
            {"programa": "sh", "args": ["-c", f"({FUGAS[fuga]}) >&2; sleep 60"], "timeout": 1}, ctx()
        )
    pid = int(str(info.value).split("stderr so far: ")[1].strip("'\"").split("\\n")[0])
    await asyncio.sleep(0.2)
    assert not alive(pid)


@pytest.mark.skipif(not comando.CEIFADOR, reason="the reaper needs Linux (PR_SET_CHILD_SUBREAPER)")
async def test_a_cancelled_job_ends_processes_that_left_the_group(tmp_path: Path):
    comando.permitir("sh")
    pidfile = tmp_path / "pid"
    script = f"setsid sleep 60 >/dev/null 2>&1 & echo $! > {pidfile}; sleep 60"
    task = asyncio.create_task(executar_comando({"programa": "sh", "args": ["-c", script]}, ctx()))
    for _ in range(100):
        if pidfile.exists() and pidfile.read_text().strip():
            break
        await asyncio.sleep(0.05)
    pid = int(pidfile.read_text())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(50):
        if not alive(pid):
            break
        await asyncio.sleep(0.1)
    assert not alive(pid)


async def test_exit_codes_and_signals_are_the_programs_own():
    comando.permitir("sh")
    assert (await executar_comando({"programa": "sh", "args": ["-c", "exit 3"]}, ctx()))["codigo"] == 3
    morto = await executar_comando({"programa": "sh", "args": ["-c", "kill -9 $$"]}, ctx())
    assert morto["codigo"] == -9


async def test_a_program_that_cannot_start_fails_permanently(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    script = tmp_path / "quebrado"
    script.write_text("#!/nao/existe/interpretador\n")
    script.chmod(0o755)
    monkeypatch.setenv(comando.ENV_ALLOW, str(script))
    with pytest.raises(PermanentFailure, match="cannot start"):
        await executar_comando({"programa": str(script)}, ctx())


async def test_arguments_too_long_for_the_system_fail_permanently():
    with pytest.raises(PermanentFailure, match=r"cannot start.*too long"):
        await executar_comando({"programa": "echo", "args": ["x" * 300_000]}, ctx())


# -- the worker's ceilings bound what a payload may ask for -----------------------------------


@pytest.mark.parametrize(
    ("opcao", "setting"),
    [({"max_bytes": 10**12}, ENV_COMANDO_MAX_BYTES), ({"timeout": 4000}, ENV_COMANDO_MAX_TIMEOUT)],
)
async def test_a_payload_cannot_ask_past_the_workers_ceiling(opcao: dict[str, int], setting: str):
    with pytest.raises(PermanentFailure, match=f"above this worker's ceiling {setting}"):
        await executar_comando({"programa": "echo", **opcao}, ctx())


async def test_the_ceilings_are_the_workers_settings_and_lower_the_defaults(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(ENV_COMANDO_MAX_BYTES, "1000")
    monkeypatch.setenv(ENV_COMANDO_MAX_TIMEOUT, "5")
    result = await executar_comando({"programa": "seq", "args": ["1", "100000"]}, ctx())
    assert result["truncado"] is True
    assert len(result["stdout"]) == 1000
    with pytest.raises(PermanentFailure, match=ENV_COMANDO_MAX_BYTES):
        await executar_comando({"programa": "echo", "max_bytes": 2000}, ctx())
    with pytest.raises(PermanentFailure, match=ENV_COMANDO_MAX_TIMEOUT):
        await executar_comando({"programa": "echo", "timeout": 6}, ctx())


WORKER = """
import asyncio, logging, sys
from executores.comando import executar_comando
from orquestrador import Contexto
ctx = Contexto("c", "m", 1, "comando", logging.LoggerAdapter(logging.getLogger("t"), {}))
asyncio.run(executar_comando({"programa": "sh", "args": ["-c", sys.argv[1]]}, ctx))
"""


@pytest.mark.skipif(not comando.CEIFADOR, reason="the reaper needs Linux (PR_SET_PDEATHSIG)")
def test_a_worker_killed_mid_job_takes_the_jobs_processes_with_it(tmp_path: Path):
    pidfile = tmp_path / "pid"
    script = f"setsid sleep 60 >/dev/null 2>&1 & echo $! > {pidfile}; sleep 60"
    env = {**os.environ, comando.ENV_ALLOW: "sh"}
    worker = subprocess.Popen([sys.executable, "-c", WORKER, script], env=env)
    try:
        for _ in range(200):
            if pidfile.exists() and pidfile.read_text().strip():
                break
            time.sleep(0.05)
        pid = int(pidfile.read_text())
        assert alive(pid)
    finally:
        worker.kill()  # SIGKILL: the worker cleans up nothing itself
        worker.wait()
    for _ in range(50):
        if not alive(pid):
            break
        time.sleep(0.1)
    assert not alive(pid)
