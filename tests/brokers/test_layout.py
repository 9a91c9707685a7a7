"""The broker packages' shape: no import cycles, and each adapter reaches the store through nothing.

Read statically (the import statements at module level, ``if TYPE_CHECKING`` blocks included),
so a cycle hidden behind a type-only import is caught too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BROKERS = ROOT / "orquestrador" / "brokers"


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: frozenset[str] = frozenset()) -> set[str]:
    """Modules of the toolkit imported at module level (not inside functions); ``from pkg import
    submodule`` counts as an import of the submodule only, as Python runs it."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    body = list(tree.body)
    while body:
        node = body.pop()
        if isinstance(node, ast.If):
            body += node.body + node.orelse
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = {f"{node.module}.{alias.name}" for alias in node.names}
            found |= names & modules or {node.module}
    return {name for name in found if name.startswith("orquestrador")}


def _graph() -> dict[str, set[str]]:
    modules = {_module(p): p for p in BROKERS.rglob("*.py")}
    known = frozenset(modules)
    return {name: _imports(path, known) & known - {name} for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_broker_modules_import_each_other_without_a_cycle():
    graph = _graph()
    # A package's __init__ re-exports its modules, so a module that imports its own package
    # (rather than the sibling module it needs) is a cycle too.
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


@pytest.mark.parametrize("path", sorted(BROKERS.rglob("*.py")), ids=lambda p: _module(p))
def test_no_broker_module_depends_on_the_store(path: Path):
    assert not {m for m in _imports(path) if m.split(".")[1] in ("store", "retention", "analysis")}


PACKAGES = ("nats", "redis", "rabbitmq", "sqs")  # one package per broker with a server
SAME_FILES = {"__init__.py", "broker.py", "consumer.py", "errors.py"}


@pytest.mark.parametrize("name", PACKAGES)
def test_every_broker_package_has_the_same_inner_files(name: str):
    files = {p.name for p in (BROKERS / name).glob("*.py")}
    assert files >= SAME_FILES, f"brokers/{name}/ lacks {sorted(SAME_FILES - files)}"


def test_the_pika_bridge_imports_nothing_of_the_toolkit():
    assert _imports(BROKERS / "rabbitmq" / "channel.py") == set()


def test_adapters_take_the_shared_pieces_from_the_base():
    """The redacted repr, the TLS split and the declare cache are the base's, written once."""
    from orquestrador.brokers import registry

    for scheme in ("memory", "nats", "redis", "amqp", "sqs"):
        cls = registry.adapter_for(scheme)
        assert "__repr__" not in vars(cls), f"{cls.__name__} writes its own __repr__"
        assert "_declared" not in vars(cls) and "forget" not in vars(cls), cls.__name__
