"""``salvar``: append records to a Parquet dataset that pandas reads.

Payload::

    {"registros": [{"url": "https://…", "titulo": "…", "tags": ["a", "b"]}, …],
     "alvo": "http", "dataset": "paginas", "diretorio": "/data/orq"}

Only ``registros`` (a list of objects) is required. ``alvo`` (default ``"desconhecido"``) and
the UTC date of writing partition the dataset hive-style; ``dataset`` (optional) is a
sub-directory of the base directory::

    <base>/[<dataset>/]alvo=<alvo>/data=<YYYY-MM-DD>/part-<message_id>.parquet

**Where it may write.** The dataset root is the worker's: ``ORQ_DATASET_DIR``, else ``dataset/``
in the state directory (``$ORQ_HOME``, default ``.orquestrador``). The base is that root, or the
payload's ``diretorio`` resolved *under* it (``"precos/2024"``). A ``diretorio`` that leaves
the root (``../``, an absolute path, a symlink pointing out) is refused with a
``PermanentFailure``, unless it lies under one of the other roots the worker's operator listed
in ``ORQ_DATASET_ROOTS`` (absolute paths separated by ``:``): whoever publishes a job never
chooses where on the worker's disk it writes.

Result: ``{"arquivo": path, "registros": n, "ja_existia": bool}``; an empty ``registros`` writes
nothing and returns ``{"arquivo": None, "registros": 0, "ja_existia": False}``.

**Idempotent per message.** The file is named after the envelope's ``message_id``, which a
redelivery keeps. It is written to a hidden temp file (pyarrow skips names starting with ``.``),
flushed to disk, then hard-linked into place, which fails if the name exists: two deliveries
of one job racing each other still leave one file. A redelivery finds the existing file (in
any ``data=`` partition, so one redelivered after midnight too), writes nothing and reports
``ja_existia: true`` with that file's row count. ``alvo`` is percent-encoded in the directory
name (``/`` cannot escape the dataset), and pyarrow decodes it back when reading.

**Types.** ``pandas.read_parquet(base)`` takes the dataset's schema from one of its files and
casts the others to it, so every column gets a predictable type: all-boolean → bool, all-int →
int64, ints and floats → float64, all-text → string, and everything else — nested objects and
lists, mixed types, ints beyond int64 — is JSON text (``df["tags"].map(json.loads)`` gets it
back). An all-null column is written as string, the type every other casts to. JSON text was
chosen over flattening because flattening makes the set of columns depend on each batch's
contents, which the one-file schema then silently drops. Keep a field's type stable across jobs;
when it is not (or new fields appear later), :func:`ler` reads the dataset with the schemas of all
files unified. A record field named ``alvo`` or ``data`` would collide with the partition
columns, so it is stored as ``alvo_original`` / ``data_original``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from pydantic import Field

from orquestrador import Contexto, PermanentFailure, executor
from orquestrador.plugins import PayloadModel, payload_dict
from orquestrador.settings import ENV_DATASET_ROOTS, home

# pyarrow (which loads pandas) is imported where it is used: registering this plugin, e.g. in
# `orq worker --all`, costs a worker nothing until a salvar job actually arrives.
if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.dataset as ds

ENV_DATASET_DIR = "ORQ_DATASET_DIR"
ALVO_PADRAO = "desconhecido"
PARTICOES = ("alvo", "data")
RENOMEADAS = {nome: f"{nome}_original" for nome in PARTICOES}

_DATASET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,120}$")
_INT64 = (-(2**63), 2**63 - 1)
NAME_MAX = 255  # bytes in one file or directory name, on every common filesystem
_CAMINHO_INVALIDO = frozenset({errno.ENAMETOOLONG, errno.ENOTDIR, errno.ELOOP, errno.EINVAL})


def _particionamento() -> ds.Partitioning:
    import pyarrow as pa
    import pyarrow.dataset as ds

    return ds.partitioning(pa.schema([(p, pa.string()) for p in PARTICOES]), flavor="hive")


def raiz() -> Path:
    """The worker's dataset root: ``ORQ_DATASET_DIR``, else ``$ORQ_HOME/dataset``."""
    return Path(os.environ.get(ENV_DATASET_DIR) or home() / "dataset")


def _subpasta(base: Path, dataset: object) -> Path:
    if dataset is None:
        return base
    if not isinstance(dataset, str) or not _DATASET_RE.match(dataset):
        raise PermanentFailure(
            f"'dataset' must be a plain directory name (letters, digits, _ . -), got {dataset!r}"
        )
    return base / dataset


def diretorio_base(diretorio: str | os.PathLike[str] | None = None, dataset: str | None = None) -> Path:
    """Where a dataset lives, for the worker's own code (:func:`ler`): any ``diretorio`` it names,
    else the root. Payloads go through :func:`diretorio_do_payload`, which stays in the roots."""
    return _subpasta(Path(diretorio) if diretorio else raiz(), dataset)


def raizes() -> list[Path]:
    """Where payloads may write: the dataset root, then each of ``ORQ_DATASET_ROOTS``."""
    extras = os.environ.get(ENV_DATASET_ROOTS, "").split(os.pathsep)
    return [raiz(), *(Path(r) for r in extras if r.strip() and os.path.isabs(r.strip()))]


def diretorio_do_payload(diretorio: object, dataset: object) -> Path:
    """The payload's ``diretorio`` (+ ``dataset``) resolved under one of :func:`raizes`.

    Checked on the resolved path (``..`` and symlinks followed), so nothing a payload says
    leads out; the path returned is spelt from the root as configured.
    """
    if diretorio is None:
        return _subpasta(raiz(), dataset)
    if not isinstance(diretorio, str) or not diretorio or "\0" in diretorio or len(diretorio) > 1024:
        raise PermanentFailure("'diretorio' must be a path of at most 1024 characters, without NUL")
    for base in raizes():
        pedido = base / diretorio  # an absolute diretorio replaces base here
        try:
            dentro = pedido.resolve().relative_to(base.resolve())
        except ValueError:
            continue
        except (OSError, RuntimeError) as exc:  # a symlink loop, a name too long: every time
            raise PermanentFailure(f"'diretorio' {diretorio[:200]!r} cannot be resolved: {exc}") from None
        return _subpasta(base / dentro, dataset)
    raise PermanentFailure(
        f"'diretorio' {diretorio[:200]!r} is outside this worker's dataset root {raiz()}: give a path "
        f"inside it, or have the operator list another root in {ENV_DATASET_ROOTS}"
    )


def _nome_arquivo(message_id: str) -> str:
    # The id comes from the envelope: anything outside a safe alphabet is hashed, never a path.
    seguro = message_id if _ID_RE.match(message_id) else hashlib.sha256(message_id.encode()).hexdigest()
    return f"part-{seguro}.parquet"


def _coluna(valores: list[Any]) -> pa.Array:
    import pyarrow as pa

    presentes = [v for v in valores if v is not None]
    if not presentes:
        return pa.array(valores, pa.string())
    if all(isinstance(v, bool) for v in presentes):
        return pa.array(valores, pa.bool_())
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in presentes):
        inteiros = [v for v in presentes if isinstance(v, int)]
        if all(_INT64[0] <= v <= _INT64[1] for v in inteiros):  # else: JSON text, below
            if len(inteiros) == len(presentes):
                return pa.array(valores, pa.int64())
            return pa.array([None if v is None else float(v) for v in valores], pa.float64())
    if all(isinstance(v, str) for v in presentes):
        return pa.array(valores, pa.string())
    texto = [
        None if v is None else v if isinstance(v, str) else json.dumps(v, ensure_ascii=False) for v in valores
    ]
    return pa.array(texto, pa.string())


def tabela(registros: list[dict[str, Any]]) -> pa.Table:
    """The records as an Arrow table with the column types described in the module docstring."""
    import pyarrow as pa

    nomes: dict[str, None] = {}
    for registro in registros:
        nomes.update(dict.fromkeys(registro))
    colunas: dict[str, pa.Array] = {}
    for nome in nomes:
        destino = RENOMEADAS.get(nome, nome)
        if destino != nome and destino in nomes:
            raise PermanentFailure(
                f"records have both {nome!r} and {destino!r}: {nome!r} is a partition column and "
                f"would be stored as {destino!r}; rename one of them"
            )
        colunas[destino] = _coluna([registro.get(nome) for registro in registros])
    return pa.table(colunas)


def _validar(registros: Any) -> list[dict[str, Any]]:
    if not isinstance(registros, list):
        raise PermanentFailure(
            f"payload needs 'registros' as a list of objects, got {type(registros).__name__}"
        )
    for i, registro in enumerate(registros):
        if not isinstance(registro, dict) or not all(isinstance(k, str) for k in registro):
            raise PermanentFailure(f"registros[{i}] is not an object with string keys")
    return registros


@contextlib.contextmanager
def _caminho_impossivel(pasta: Path) -> Iterator[None]:
    """A path the filesystem refuses (too long, a file where a directory should be) is refused
    the same on every attempt: a PermanentFailure, not a retry. Others (a full disk) retry."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in _CAMINHO_INVALIDO:
            raise
        raise PermanentFailure(f"cannot write under {str(pasta)[:300]}: {exc.strerror}") from None


def _existente(pasta_alvo: Path, nome: str) -> Path | None:
    return next(iter(sorted(pasta_alvo.glob(f"data=*/{nome}"))), None)


def _gravar(tab: pa.Table, destino: Path) -> bool:
    """Write ``tab`` to ``destino`` unless it exists; True if this call created it."""
    import pyarrow.parquet as pq

    tmp = destino.with_name(f".{destino.name}.{uuid.uuid4().hex}.tmp")
    try:
        pq.write_table(tab, tmp)
        with open(tmp, "rb") as fh:  # on disk before the job is acked
            os.fsync(fh.fileno())
        try:
            os.link(tmp, destino)  # atomic, and never replaces: the first delivery wins
        except FileExistsError:
            return False
        except OSError:  # a filesystem without hard links: replace, still atomic
            if destino.exists():
                return False
            os.replace(tmp, destino)
        _fsync_dir(destino.parent)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def _fsync_dir(pasta: Path) -> None:
    try:
        fd = os.open(pasta, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class PedidoSalvar(PayloadModel):
    """The ``salvar`` executor's payload (other fields are kept and ignored)."""

    registros: list[dict[str, Any]] = Field(description="records to append, one object each")
    alvo: str | None = Field(default=None, description="partition alvo= (desconhecido)")
    dataset: str | None = Field(default=None, description="sub-directory of the base directory")
    diretorio: str | None = Field(default=None, description="base directory, under the worker's dataset root")


@executor("salvar", schema=PedidoSalvar)
def salvar(pedido: dict[str, Any] | PedidoSalvar, ctx: Contexto) -> dict[str, Any]:
    """Write ``payload["registros"]`` as one Parquet file named after the job's message_id.

    A plain ``def``: the worker runs it in its thread pool, so the pyarrow write never blocks
    the event loop.
    """
    import pyarrow.parquet as pq

    payload = payload_dict(pedido)
    registros = _validar(payload.get("registros"))
    if not registros:
        return {"arquivo": None, "registros": 0, "ja_existia": False}
    if not ctx.message_id:
        raise PermanentFailure("salvar needs the envelope's message_id to write each job once")
    alvo = payload.get("alvo") or ALVO_PADRAO
    if not isinstance(alvo, str) or len(alvo) > 200:
        raise PermanentFailure(f"'alvo' must be text of at most 200 characters, got {type(alvo).__name__}")
    base = diretorio_do_payload(payload.get("diretorio"), payload.get("dataset"))
    nome = _nome_arquivo(ctx.message_id)
    particao = f"alvo={quote(alvo, safe='')}"
    if len(particao.encode()) > NAME_MAX:
        raise PermanentFailure(f"'alvo' is too long for a directory name once encoded ({particao[:60]}…)")
    pasta_alvo = base / particao

    with _caminho_impossivel(pasta_alvo):
        existente = _existente(pasta_alvo, nome)
        if existente is None:
            tab = tabela(registros)
            pasta = pasta_alvo / f"data={datetime.now(UTC).date().isoformat()}"
            pasta.mkdir(parents=True, exist_ok=True)
            destino = pasta / nome
            if _gravar(tab, destino):
                ctx.log.info("wrote %d record(s) to %s", tab.num_rows, destino)
                return {"arquivo": str(destino.absolute()), "registros": tab.num_rows, "ja_existia": False}
            existente = destino
    linhas = pq.read_metadata(existente).num_rows
    ctx.log.info("%s already written by an earlier delivery; nothing to do", existente)
    return {"arquivo": str(existente.absolute()), "registros": linhas, "ja_existia": True}


def _unificar(schemas: list[pa.Schema]) -> pa.Schema:
    import pyarrow as pa

    try:
        return pa.unify_schemas(schemas, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    # Some field changed type across files (e.g. int64, then string): read that one as text.
    campos: dict[str, list[pa.DataType]] = {}
    for schema in schemas:
        for campo in schema:
            campos.setdefault(campo.name, []).append(campo.type)
    unificados = []
    for nome, tipos in campos.items():
        try:
            tipo = pa.unify_schemas([pa.schema([(nome, t)]) for t in tipos], promote_options="permissive")
            unificados.append(tipo.field(nome))
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            unificados.append(pa.field(nome, pa.string()))
    return pa.schema(unificados)


def _schema_efetivo(fragmento: ds.ParquetFileFragment) -> pa.Schema:
    """A file's schema, with columns that hold only nulls typed null (they then unify with anything).

    salvar writes an all-null column as string, which would otherwise turn a numeric field to
    text as soon as one job had no value for it.
    """
    import pyarrow as pa

    schema = fragmento.physical_schema
    metadata = fragmento.metadata
    if metadata.num_rows == 0 or metadata.num_row_groups == 0:
        return schema
    nulos: dict[str, int] = {}
    sem_contagem: set[str] = set()
    for g in range(metadata.num_row_groups):
        grupo = metadata.row_group(g)
        for c in range(grupo.num_columns):
            coluna = grupo.column(c)
            stats = coluna.statistics
            if stats is None or not stats.has_null_count:
                sem_contagem.add(coluna.path_in_schema)
            else:
                nulos[coluna.path_in_schema] = nulos.get(coluna.path_in_schema, 0) + stats.null_count
    for nome in sem_contagem:
        nulos.pop(nome, None)
    campos = [
        campo.with_type(pa.null()) if nulos.get(campo.name) == metadata.num_rows else campo
        for campo in schema
    ]
    return pa.schema(campos)


def ler(diretorio: str | os.PathLike[str] | None = None, *, dataset: str | None = None) -> pd.DataFrame:
    """The whole dataset as a DataFrame, with the columns of *all* its files.

    ``pandas.read_parquet(base)`` is enough while every job writes the same fields with the same
    types; it reads with one file's schema, so a field that first appears in a later file is
    missing and a changed type fails. This reads every file's footer and unifies the schemas
    (int64 + float64 → float64, conflicting types → text, missing columns → null).
    """
    import pyarrow as pa
    import pyarrow.dataset as ds

    base = diretorio_base(diretorio, dataset)
    if not base.exists():
        import pandas as pd

        return pd.DataFrame(columns=list(PARTICOES))
    descoberta = ds.dataset(base, format="parquet", partitioning=_particionamento())
    schemas = [_schema_efetivo(fragmento) for fragmento in descoberta.get_fragments()]
    if not schemas:
        import pandas as pd

        return pd.DataFrame(columns=list(PARTICOES))
    schema = _unificar(schemas)
    for particao in PARTICOES:
        schema = schema.append(pa.field(particao, pa.string()))
    completo = ds.dataset(base, schema=schema, format="parquet", partitioning=_particionamento())
    return completo.to_table().to_pandas()
