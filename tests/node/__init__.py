"""Node BullMQ and Bull Board for the interop tests, installed where the repository is not.

``package.json`` and ``package-lock.json`` here pin them; :func:`node_modules` runs ``npm ci``
into ``$ORQ_NODE_HOME`` (default ``~/.cache/orquestrador/node``) once per lock file: again only
when the lock changes. ``.ci/install`` calls it (``python -m tests.node``), and the tests' session
fixture calls it too, so a plain ``pytest`` works on a machine with Node.js 20 and npm.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit

HERE = Path(__file__).parent
SCRIPT = HERE / "interop.cjs"


def home() -> Path:
    return Path(os.environ.get("ORQ_NODE_HOME") or Path.home() / ".cache" / "orquestrador" / "node")


def missing_tools() -> list[str]:
    return [tool for tool in ("node", "npm") if shutil.which(tool) is None]


def node_modules() -> Path:
    """The installed ``node_modules`` (``npm ci`` first if the lock file changed)."""
    target = home()
    lock = (HERE / "package-lock.json").read_bytes()
    modules = target / "node_modules"
    installed = (target / "package-lock.json").is_file() and (modules / "@bull-board" / "express").is_dir()
    if installed and (target / "package-lock.json").read_bytes() == lock and (modules / "bullmq").is_dir():
        return modules
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(HERE / "package.json", target / "package.json")
    (target / "package-lock.json").write_bytes(lock)
    subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=target, check=True, timeout=600, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return modules


def redis_of(bullmq_url: str) -> str:
    """The connection options Node's BullMQ (ioredis) takes for a ``bullmq://`` URL, as JSON."""
    parts = urlsplit(bullmq_url)
    options: dict[str, object] = {"host": parts.hostname or "127.0.0.1", "port": parts.port or 6379}
    db = parts.path.strip("/")
    options["db"] = int(db) if db.isdigit() else 0
    if parts.password:
        options["password"] = unquote(parts.password)
    if parts.username:
        options["username"] = unquote(parts.username)
    return json.dumps(options)
