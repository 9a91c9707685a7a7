"""Running one program as a ``comando`` job: started in a session of its own (under its reaper,
:mod:`executores._ceifador`, on Linux), output read up to a cap, and the whole process tree
ended when it exits, times out or the job is cancelled. What may run is :mod:`executores.comando`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orquestrador import PermanentFailure

_CHUNK = 64 * 1024
_CANCEL_POLL = 0.1
_EXIT_POLL = 0.02
_DRAIN_GRACE = 5.0  # how long to wait for pipes to close after the group is gone
# On Linux each program runs under its own reaper (see executores/_ceifador.py); elsewhere its
# process group is all that can be killed.
CEIFADOR = sys.platform == "linux"
_CEIFADOR = str(Path(__file__).with_name("_ceifador.py"))
# Starting fails the same way every time: a retry cannot help.
_ERROS_PERMANENTES = frozenset({errno.ENOENT, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR,
                                errno.ENOEXEC, errno.E2BIG, errno.ENAMETOOLONG, errno.ELOOP})  # fmt: skip


@dataclass(frozen=True)
class Execucao:
    """How a run ended: ``terminou`` False means it was killed (timeout or cancellation)."""

    terminou: bool
    codigo: int
    duracao: float
    stdout: Saida
    stderr: Saida


@dataclass
class Saida:
    limite: int
    dados: bytearray = field(default_factory=bytearray)
    truncado: bool = False

    def texto(self) -> str:
        return bytes(self.dados).decode("utf-8", errors="replace")


async def _ler(stream: asyncio.StreamReader | None, saida: Saida) -> None:
    # Keep reading past the cap: a program blocked on a full pipe would never exit.
    if stream is None:
        return
    while chunk := await stream.read(_CHUNK):
        room = saida.limite - len(saida.dados)
        if room > 0:
            saida.dados += chunk[:room]
        if len(chunk) > room:
            saida.truncado = True


async def _alimentar(stream: asyncio.StreamWriter | None, dados: bytes) -> None:
    if stream is None:
        return
    try:
        stream.write(dados)
        await stream.drain()
    except (BrokenPipeError, ConnectionResetError):
        pass  # the program exited or closed stdin without reading everything: its choice
    finally:
        stream.close()


async def _esperar_evento(evento: threading.Event) -> None:
    while not evento.is_set():
        await asyncio.sleep(_CANCEL_POLL)


async def _saida_do_processo(proc: asyncio.subprocess.Process) -> int:
    # Process.wait() (Python 3.11) also waits for the pipes to close, which a background child
    # holding stdout delays for as long as it lives; returncode is set at the exit itself.
    while proc.returncode is None:
        await asyncio.sleep(_EXIT_POLL)
    return proc.returncode


def _matar_grupo(proc: asyncio.subprocess.Process) -> None:
    # start_new_session made the child leader of its own group: the group id is its pid.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _encerrar(proc: asyncio.subprocess.Process) -> None:
    """End the job's processes: its reaper kills the whole tree then exits (else: the group)."""
    if not CEIFADOR:
        _matar_grupo(proc)
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)


async def _iniciar(
    programa: str, args: list[str], *, stdin: bool, cwd: str | None, env: dict[str, str]
) -> asyncio.subprocess.Process:
    """Start ``programa`` in a session of its own, under its reaper on Linux.

    The reaper reports on a pipe whether the program could be started; an error that will
    recur (not found, not executable, arguments too long) is a ``PermanentFailure``.
    """
    opcoes: dict[str, Any] = {
        "stdin": asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
        "stdout": asyncio.subprocess.PIPE,
        "stderr": asyncio.subprocess.PIPE,
        "cwd": cwd,
        "env": env,
        "start_new_session": True,
    }
    try:
        if not CEIFADOR:
            return await asyncio.create_subprocess_exec(programa, *args, **opcoes)
        leitura, escrita = os.pipe()
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-I", "-S", _CEIFADOR, str(escrita), str(os.getpid()), programa, *args,
                pass_fds=(escrita,), **opcoes,
            )  # fmt: skip
        finally:
            os.close(escrita)
        try:
            relato = await asyncio.to_thread(os.read, leitura, 64)  # empty: the program started
        finally:
            os.close(leitura)
        if relato:
            await proc.wait()
            causa, _, codigo = relato.decode().rpartition(" ")
            if causa:  # not the program's fault, nor the payload's: another worker may do better
                raise RuntimeError(f"cannot start the reaper of {programa}: {os.strerror(int(codigo))}")
            raise OSError(int(codigo), os.strerror(int(codigo)))
        return proc
    except OSError as exc:
        if exc.errno in _ERROS_PERMANENTES:
            raise PermanentFailure(f"cannot start {programa}: {exc.strerror or exc}") from None
        raise


async def executar(
    programa: str, args: list[str], *, stdin: str | None, cwd: str | None, env: dict[str, str],
    timeout: float, limite: int, cancelado: threading.Event, log: logging.Logger | logging.LoggerAdapter[Any],
) -> Execucao:  # fmt: skip
    """Run ``programa`` to its end, or kill its whole tree after ``timeout`` or on ``cancelado``
    (and when this coroutine is cancelled); ``limite`` bytes of each output are kept."""
    inicio = time.monotonic()
    proc = await _iniciar(programa, args, stdin=stdin is not None, cwd=cwd, env=env)

    out, err = Saida(limite), Saida(limite)
    io = [asyncio.create_task(_ler(proc.stdout, out)), asyncio.create_task(_ler(proc.stderr, err))]
    if stdin is not None:
        io.append(asyncio.create_task(_alimentar(proc.stdin, stdin.encode())))
    fim = asyncio.create_task(proc.wait())
    saida = asyncio.create_task(_saida_do_processo(proc))
    parar = asyncio.create_task(_esperar_evento(cancelado))
    try:
        await asyncio.wait({fim, saida, parar}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        terminou = proc.returncode is not None
        if not terminou:
            _encerrar(proc)
        elif not CEIFADOR:  # background children left in the group end with the program
            _matar_grupo(proc)
        try:
            codigo = await asyncio.wait_for(asyncio.shield(saida), _DRAIN_GRACE)
        except TimeoutError:  # the reaper did not answer: its group at least
            _matar_grupo(proc)
            codigo = await asyncio.wait_for(saida, _DRAIN_GRACE)
        duracao = round(time.monotonic() - inicio, 3)
        _, pendentes = await asyncio.wait(io, timeout=_DRAIN_GRACE)
        if pendentes:  # someone outside the group still holds a pipe: keep what was read
            log.warning("%s: output pipes still open after it exited; stopped reading", programa)
    finally:
        parar.cancel()
        if proc.returncode is None:  # cancelled by the runtime (job timeout or shutdown)
            _encerrar(proc)
        for task in (*io, fim, saida):
            task.cancel()
    return Execucao(terminou, codigo, duracao, out, err)
