"""``comando``: run one allow-listed program, never through a shell.

Payload::

    {"programa": "wc", "args": ["-l", "x.txt"], "timeout": 30,
     "cwd": "/data", "stdin": "text", "env": {"TZ": "UTC"}, "max_bytes": 131072,
     "falhar_se_codigo_diferente_de_zero": false}

Only ``programa`` is required. ``args`` is a list of strings, handed to the program as they are
(``asyncio.create_subprocess_exec``): ``;``, ``$(…)``, backticks, globs and quotes mean nothing,
since no shell ever sees them. Unknown keys are refused, so a typo never silently drops an option.

Result: ``{"codigo": exit code, "stdout": str, "stderr": str, "duracao": seconds,
"truncado": bool, "programa": the absolute path that ran}``. Output is decoded as UTF-8
(undecodable bytes become U+FFFD). A non-zero exit code is a result, not a failure, unless
``falhar_se_codigo_diferente_de_zero`` is true: then :class:`ComandoFalhou` is raised and the
job is retried with backoff, then dead-lettered. A program killed by a signal has a negative
``codigo`` (``-9`` for SIGKILL).

**The allow-list.** ``ORQ_COMANDO_ALLOW`` (comma-separated) plus :func:`permitir`; entries are
program names (``wc``) or absolute paths (``/opt/tools/bin/relatorio``). A name is resolved with
``shutil.which`` against the minimal ``PATH`` (``ORQ_COMANDO_PATH``, default
``/usr/local/bin:/usr/bin:/bin``) to *one* absolute path, and the program a job asks for is
resolved the same way; it runs only if that absolute path is one the allow-list resolves to.
So ``sh`` on the list allows ``sh`` and ``/usr/bin/sh`` (if that is where ``which`` finds it), but
not ``/bin/sh``: paths are compared as written, never through symlinks, because multi-call
binaries (busybox) would otherwise let ``ls`` on the list run ``/bin/sh``. Relative paths
(``../bin/sh``, ``./x``, ``bin/sh``) and non-normalised ones (``/usr/bin/../bin/sh``) are always
refused. A refusal is a ``PermanentFailure`` naming the setting. Listing a program trusts it with
any arguments: do not list programs that run other programs from their arguments (``env``,
``find -exec``, ``xargs``, ``sh``, ``python``, ``git -c``…) unless you trust whoever can publish jobs.

**Environment.** The worker's environment is not inherited (it may hold broker passwords and
tokens): the program gets ``PATH`` (the minimal one) and ``LANG`` (the worker's, else
``C.UTF-8``), plus payload ``env`` entries whose names are listed in ``ORQ_COMANDO_ENV_ALLOW``.
``PATH``, ``LD_*`` and ``DYLD_*`` can never be set from a payload: they would make an allowed
program load or run other code.

**Timeout** (payload ``timeout``, default 60 s, at most ``ORQ_COMANDO_MAX_TIMEOUT``, 3600 s).
On timeout every process of the job is killed with SIGKILL and the job fails with
``PermanentFailure``: a program that hung once will usually hang again, and retrying would hold a
worker slot for ``max_tentativas`` × ``timeout``. Raise ``timeout`` if it needs longer.

**Nothing left running.** When the program exits, times out, or its job is cancelled, every
process it started ends with it, including children that left its process group or session
(``setsid``, daemons that fork twice). On Linux each program runs under a small reaper process
(:mod:`executores._ceifador`, a *child subreaper*: orphans of the job are re-parented to it, not
to init) that SIGKILLs and reaps the job's whole process tree before it exits, and that does so
too if the worker dies. Elsewhere only the program's process group is killed.

**Output cap** (payload ``max_bytes``, default 128 KiB, at most ``ORQ_COMANDO_MAX_BYTES``, 1 MiB):
stdout and stderr are each kept up to that many bytes and the rest is read and dropped (so the
program never blocks on a full pipe); ``truncado`` says whether anything was dropped. The
default keeps the result under the 1 MiB envelope limit even when every byte is undecodable (3
bytes of U+FFFD each). A payload asking past a ceiling is refused (``PermanentFailure`` naming
the setting); the ceilings are the worker's (also ``orq worker --max-command-timeout`` /
``--max-output-bytes``), never the payload's.

**Shutdown.** When the worker drains (``ctx.cancelado``) or cancels the job, the program and
everything it started are killed and the job is released for another attempt.

This module decides what may run and with what; running it is :mod:`executores._processo`'s.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from typing import Any

from pydantic import ConfigDict, Field

from executores._processo import CEIFADOR as CEIFADOR  # whether a reaper ends each job's process tree
from executores._processo import executar
from orquestrador import Contexto, PermanentFailure, Retry, executor
from orquestrador.plugins import PayloadModel, payload_dict
from orquestrador.settings import (
    DEFAULT_COMANDO_MAX_BYTES,
    DEFAULT_COMANDO_MAX_TIMEOUT,
    ENV_COMANDO_MAX_BYTES,
    ENV_COMANDO_MAX_TIMEOUT,
    ceiling,
    finito,
)

ENV_ALLOW = "ORQ_COMANDO_ALLOW"
ENV_PATH = "ORQ_COMANDO_PATH"
ENV_ENV_ALLOW = "ORQ_COMANDO_ENV_ALLOW"

DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_BYTES = 128 * 1024

CHAVES = frozenset(
    {"programa", "args", "timeout", "cwd", "stdin", "env", "max_bytes", "falhar_se_codigo_diferente_de_zero"}
)
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

_permitidos: set[str] = set()
_lock = threading.Lock()


class ComandoFalhou(Exception):
    """The program exited non-zero and the payload asked for that to fail the job (so it retries)."""

    def __init__(self, message: str, *, codigo: int) -> None:
        super().__init__(message)
        self.codigo = codigo


def permitir(*programas: str) -> None:
    """Allow program names or absolute paths in this process, besides ``ORQ_COMANDO_ALLOW``."""
    validos = [_check_entry(p) for p in programas]
    with _lock:
        _permitidos.update(validos)


def revogar(*programas: str) -> None:
    """Undo :func:`permitir` for these entries (the environment variable is not affected)."""
    with _lock:
        _permitidos.difference_update(programas)


def permitidos() -> frozenset[str]:
    """Allow-list entries right now: ``ORQ_COMANDO_ALLOW`` (read on every call) plus :func:`permitir`."""
    from_env = (e.strip() for e in os.environ.get(ENV_ALLOW, "").split(","))
    with _lock:
        return frozenset(e for e in from_env if e) | frozenset(_permitidos)


def caminho() -> str:
    """The minimal ``PATH``: where names are looked up, and the only ``PATH`` programs get."""
    dirs = [d for d in (os.environ.get(ENV_PATH) or DEFAULT_PATH).split(os.pathsep) if os.path.isabs(d)]
    return os.pathsep.join(dirs)


def _check_entry(programa: str) -> str:
    programa = programa.strip()
    if not programa or "\0" in programa:
        raise ValueError(f"{programa!r} is not a program name or absolute path")
    if "/" in programa and (not os.path.isabs(programa) or os.path.normpath(programa) != programa):
        raise ValueError(
            f"{programa!r}: give a program name (wc) or a normalised absolute path (/usr/bin/wc)"
        )
    return programa


def _refused(programa: str, detail: str = "") -> PermanentFailure:
    return PermanentFailure(
        f"program {programa!r}{detail} is not allow-listed for the comando executor: add its name "
        f"or absolute path to {ENV_ALLOW} in the worker's environment (names are looked up in "
        f"{ENV_PATH}, default {DEFAULT_PATH}), or call executores.comando.permitir(...) in the worker"
    )


def resolver(programa: Any) -> str:
    """The absolute path ``programa`` runs as, if the allow-list permits it; else PermanentFailure.

    Public so an operator can check a configuration (``resolver("wc")``) without running anything.
    """
    if not isinstance(programa, str) or not programa.strip() or "\0" in programa:
        raise PermanentFailure(f"payload needs 'programa' as a program name, got {programa!r}")
    path = caminho()
    if "/" in programa:
        if not os.path.isabs(programa) or os.path.normpath(programa) != programa:
            raise _refused(programa, " (relative or non-normalised path)")
        resolvido: str | None = programa
    else:
        resolvido = shutil.which(programa, path=path)
    permitidos_abs: set[str] = set()
    for entrada in permitidos():
        alvo = entrada if "/" in entrada else shutil.which(entrada, path=path)
        if alvo is not None:
            permitidos_abs.add(alvo)
    if resolvido is None:
        if programa in permitidos():
            raise PermanentFailure(f"program {programa!r} is allow-listed but not found in PATH {path}")
        raise _refused(programa)
    if resolvido not in permitidos_abs:
        raise _refused(programa, "" if resolvido == programa else f" (resolved to {resolvido})")
    return resolvido


def _strings(valor: Any, nome: str) -> list[str]:
    if not isinstance(valor, list) or not all(isinstance(a, str) for a in valor):
        # The values are not echoed: arguments may carry credentials, and this message is logged.
        tipos = sorted({type(a).__name__ for a in valor}) if isinstance(valor, list) else type(valor).__name__
        raise PermanentFailure(f"'{nome}' must be a list of strings, got {tipos}")
    if any("\0" in a for a in valor):
        raise PermanentFailure(f"'{nome}' must not contain NUL characters")
    return valor


def _numero(payload: dict[str, Any], chave: str, padrao: float, env: str, teto: float, opcao: str) -> float:
    """A positive payload number, at most the worker's ceiling ``env`` (whose default is ``teto``)."""
    teto = ceiling(env, teto)
    valor = payload.get(chave, min(padrao, teto))
    numero = finito(valor)
    if numero is None or numero <= 0:
        raise PermanentFailure(f"'{chave}' must be a number > 0, got {str(valor)[:40]}")
    if numero > teto:
        raise PermanentFailure(
            f"'{chave}'={numero:g} is above this worker's ceiling {env}={teto:g}: ask for less, or have "
            f"the operator raise {env} (orq worker {opcao})"
        )
    return numero


def _ambiente(payload: dict[str, Any]) -> dict[str, str]:
    env = {"PATH": caminho(), "LANG": os.environ.get("LANG") or "C.UTF-8"}
    extra = payload.get("env") or {}
    if not isinstance(extra, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in extra.items()
    ):
        raise PermanentFailure("'env' must be an object of string names to string values")
    liberadas = {n.strip() for n in os.environ.get(ENV_ENV_ALLOW, "").split(",") if n.strip()}
    for nome, valor in extra.items():
        if not _ENV_NAME_RE.match(nome) or "\0" in valor:
            raise PermanentFailure(f"invalid environment variable name or value for {nome!r}")
        if nome == "PATH" or nome.startswith(("LD_", "DYLD_")):
            raise PermanentFailure(f"environment variable {nome!r} can never be set from a payload")
        if nome not in liberadas:
            raise PermanentFailure(
                f"environment variable {nome!r} is not allowed: add its name to {ENV_ENV_ALLOW} "
                "in the worker's environment"
            )
        env[nome] = valor  # values are never logged: they may be credentials
    return env


class PedidoComando(PayloadModel):
    """The ``comando`` executor's payload: unknown keys are refused, so a typo never drops an option."""

    model_config = ConfigDict(extra="forbid")

    programa: str = Field(description="allow-listed program name or absolute path; never a shell")
    args: list[str] = Field(default=[], description="arguments, handed to the program as they are")
    timeout: float | None = Field(default=None, description="seconds before every process is killed (60)")
    cwd: str | None = Field(default=None, description="existing working directory")
    stdin: str | None = Field(default=None, description="text written to the program's input")
    env: dict[str, str] | None = Field(
        default=None, description="environment entries, names listed in ORQ_COMANDO_ENV_ALLOW only"
    )
    max_bytes: float | None = Field(default=None, description="bytes kept of stdout and of stderr (128 KiB)")
    falhar_se_codigo_diferente_de_zero: bool = Field(
        default=False, description="a non-zero exit code fails the job (retried, then dead-lettered)"
    )


@executor("comando", schema=PedidoComando)
async def executar_comando(pedido: dict[str, Any] | PedidoComando, ctx: Contexto) -> dict[str, Any]:
    """Run ``payload["programa"]`` with ``payload["args"]`` and report its exit code and output."""
    payload = payload_dict(pedido)
    desconhecidas = set(payload) - CHAVES
    if desconhecidas:
        raise PermanentFailure(f"unknown payload keys {sorted(desconhecidas)}; known: {sorted(CHAVES)}")
    programa = resolver(payload.get("programa"))
    args = _strings(payload.get("args", []), "args")
    timeout = _numero(
        payload, "timeout", DEFAULT_TIMEOUT, ENV_COMANDO_MAX_TIMEOUT, DEFAULT_COMANDO_MAX_TIMEOUT,
        "--max-command-timeout",
    )  # fmt: skip
    limite = int(_numero(
        payload, "max_bytes", DEFAULT_MAX_BYTES, ENV_COMANDO_MAX_BYTES, DEFAULT_COMANDO_MAX_BYTES,
        "--max-output-bytes",
    ))  # fmt: skip
    falhar = payload.get("falhar_se_codigo_diferente_de_zero", False)
    if not isinstance(falhar, bool):
        raise PermanentFailure("'falhar_se_codigo_diferente_de_zero' must be true or false")
    cwd = payload.get("cwd")
    if cwd is not None and (not isinstance(cwd, str) or not os.path.isdir(cwd)):
        raise PermanentFailure(f"'cwd' must be an existing directory, got {cwd!r}")
    stdin = payload.get("stdin")
    if stdin is not None and not isinstance(stdin, str):
        raise PermanentFailure("'stdin' must be text")
    env = _ambiente(payload)

    # The arguments are not logged: they may carry credentials.
    ctx.log.info("running %s with %d argument(s), timeout %gs", programa, len(args), timeout)
    fim = await executar(
        programa, args, stdin=stdin, cwd=cwd, env=env, timeout=timeout, limite=limite,
        cancelado=ctx.cancelado, log=ctx.log,
    )  # fmt: skip
    codigo, duracao, out, err = fim.codigo, fim.duracao, fim.stdout, fim.stderr

    if not fim.terminou:
        if ctx.cancelado.is_set():
            raise Retry(f"{programa} killed because the worker is shutting down", delay=0)
        raise PermanentFailure(
            f"{programa} did not finish within {timeout:g}s: its process group was killed; a hang "
            "is rarely transient, so the job is not retried (raise the payload 'timeout' if it "
            f"needs longer); stderr so far: {err.texto()[-300:]!r}"
        )
    resultado = {
        "codigo": codigo,
        "stdout": out.texto(),
        "stderr": err.texto(),
        "duracao": duracao,
        "truncado": out.truncado or err.truncado,
        "programa": programa,
    }
    if codigo != 0 and falhar:
        raise ComandoFalhou(
            f"{programa} exited with code {codigo}; stderr: {err.texto()[-500:]!r}", codigo=codigo
        )
    ctx.log.info("%s exited with code %d in %.3fs", programa, codigo, duracao)
    return resultado
