"""The reaper of one ``comando`` job: runs the program, and when it ends ends everything it started.

Started by :mod:`executores.comando` (Linux) as ``python -I -S _ceifador.py STATUS_FD PARENT_PID
PROGRAM ARGS...``, standard library only. It makes itself a *child subreaper*
(``PR_SET_CHILD_SUBREAPER``), so every process of the job that loses its parent — a daemon that
forked twice, a ``setsid`` child of a shell that exited — is re-parented to it instead of to
init, and stays in its process tree whatever session or group it moved to. When the program
exits, or when the worker sends SIGTERM (timeout, cancellation, shutdown), or when the worker
dies (``PR_SET_PDEATHSIG``), it SIGKILLs every descendant until none is left, reaps them all,
and exits with the program's status (re-raising the signal that killed it, so the worker sees
``-9`` as it would without the reaper). A reaper per job, not the worker itself, because only
it can tell which orphan belongs to which of the jobs a worker runs at once.

``STATUS_FD`` gets the errno if the program cannot be started (``reaper <errno>`` if this process
cannot become its reaper), and is closed unwritten once it has started.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
_ROUNDS = 500  # kill rounds before giving up on a process tree that keeps forking
_ROUND_PAUSE = 0.01
_SINAIS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class _Encerrar(Exception):
    """SIGTERM/SIGINT/SIGHUP from the worker: end the job now."""


def _prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _processos() -> dict[int, tuple[int, bytes]]:
    """Every process: pid → (parent pid, state letter)."""
    tabela: dict[int, tuple[int, bytes]] = {}
    for nome in os.listdir("/proc"):
        if not nome.isdigit():
            continue
        try:
            with open(f"/proc/{nome}/stat", "rb") as fh:
                campos = fh.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        tabela[int(nome)] = (int(campos[1]), campos[0])
    return tabela


def descendentes_vivos(raiz: int) -> list[int]:
    """Descendants of ``raiz`` that are not zombies already."""
    tabela = _processos()
    filhos: dict[int, list[int]] = {}
    for pid, (ppid, _) in tabela.items():
        filhos.setdefault(ppid, []).append(pid)
    vivos: list[int] = []
    fila = [raiz]
    while fila:
        for pid in filhos.get(fila.pop(), []):
            fila.append(pid)
            if tabela[pid][1] != b"Z":
                vivos.append(pid)
    return vivos


def _colher() -> None:
    """Reap every child that has exited, without blocking."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def matar_tudo() -> None:
    """SIGKILL every descendant, again and again, until none is left alive; reap them."""
    eu = os.getpid()
    for _ in range(_ROUNDS):
        vivos = descendentes_vivos(eu)
        if not vivos:
            break
        for pid in vivos:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(_ROUND_PAUSE)
        _colher()
    _colher()


def _esperar(programa: int) -> int:
    """Reap children (adopted ones too) until the program itself exits; its wait status."""
    while True:
        pid, status = os.waitpid(-1, 0)
        if pid == programa:
            return status


def _sair(status: int) -> None:
    codigo = os.waitstatus_to_exitcode(status)
    if codigo < 0:  # die of the same signal, without a core file of our own
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        with contextlib.suppress(OSError, ValueError):  # SIGKILL and SIGSTOP take no handler
            signal.signal(-codigo, signal.SIG_DFL)
        os.kill(os.getpid(), -codigo)
        codigo = 128 - codigo
    os._exit(codigo)


def _encerrar(signum: int, frame: object) -> None:
    raise _Encerrar


def main(argv: list[str]) -> None:
    status_fd, pai, programa, args = int(argv[1]), int(argv[2]), argv[3], argv[3:]
    os.set_inheritable(status_fd, False)  # the program must not hold it open
    for sig in _SINAIS:
        signal.signal(sig, _encerrar)
    try:
        try:
            _prctl(PR_SET_CHILD_SUBREAPER, 1)
            _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        except OSError as exc:  # never run a program this reaper could not keep track of
            os.write(status_fd, f"reaper {exc.errno or 0}".encode())
            os._exit(127)
        if os.getppid() != pai:  # the worker died before PDEATHSIG was armed
            raise _Encerrar
        try:
            filho = os.posix_spawn(programa, args, os.environ)
        except OSError as exc:
            os.write(status_fd, str(exc.errno or 0).encode())
            os._exit(127)
        os.close(status_fd)
        status = _esperar(filho)
    except _Encerrar:
        _ignorar()
        matar_tudo()
        os._exit(128 + signal.SIGKILL)
    _ignorar()
    matar_tudo()
    _sair(status)


def _ignorar() -> None:
    """From here on a signal from the worker must not cut the clean-up short."""
    for sig in _SINAIS:
        signal.signal(sig, signal.SIG_IGN)


if __name__ == "__main__":
    main(sys.argv)
