"""A broker package that is not the toolkit's passes the contract suite once it is registered.

The toy (``tests/toybroker``) is registered the way any installed package is: a ``*.dist-info``
with an ``entry_points.txt`` on ``sys.path``, which ``importlib.metadata`` reads. The suite then
finds it in the registry, runs against it, and takes its expectations from its capabilities.
It lacks server-side dedup, lease, delivery count and delayed redelivery, so it passes with
every fallback of ``orquestrador.brokers.support`` switched on.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = "tests/contract"
REDUCED = {"server_dedup", "server_lease", "delivery_count", "delayed_redelivery"}


def _install(site: Path) -> None:
    info = site / "orq_toy_broker-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: orq-toy-broker\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[orquestrador.brokers]\ntoy = tests.toybroker:ToyBroker\n")


def test_a_registered_third_party_broker_passes_the_contract_suite(tmp_path: Path):
    site = tmp_path / "site"
    _install(site)
    path = os.pathsep.join([str(site), str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, PYTHONPATH=path)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "toy", CONTRACT],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    tail = run.stdout[-3000:] + run.stderr[-2000:]
    assert run.returncode == 0, tail
    summary = run.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "failed" not in summary and "skipped" not in summary, summary


def test_the_toy_is_unknown_until_registered():
    code = "from orquestrador.brokers import registry; print('toy' in registry.known_schemes())"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert run.stdout.strip() == "False", run.stderr


def test_the_toy_lacks_what_the_fallbacks_supply():
    from tests.toybroker import ToyBroker

    assert set(ToyBroker.capabilities.lacks()) >= REDUCED


def test_the_toy_uses_only_public_names_of_the_toolkit():
    """A third party builds on what the toolkit exports, so the toy imports no ``_name`` and
    reaches into no other object's ``_attribute``."""
    import ast

    tree = ast.parse((ROOT / "tests" / "toybroker" / "__init__.py").read_text())
    private = [
        f"line {node.lineno}: {alias.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
        if alias.name.startswith("_")
    ]
    private += [
        f"line {node.lineno}: .{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.endswith("__")
        if not (isinstance(node.value, ast.Name) and node.value.id == "self")
    ]
    assert private == []
