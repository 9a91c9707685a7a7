"""The store package is the only owner of SQL, sits below everything that uses it, and the
package imports without cycles: read statically from the source, so a query pasted into a
widget or a CLI command, or an import of the facade from the store, fails here."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

from tests.workers import ROOT

PACKAGE = ROOT / "orquestrador"
STORE = PACKAGE / "store"
# A statement, not a word: "select" in prose or a CLI verb does not count.
SQL = re.compile(
    r"\b(SELECT\s.+\sFROM|INSERT\s+(OR\s+\w+\s+)?INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM"
    r"|CREATE\s+(TEMP\s+)?(TABLE|INDEX)|ALTER\s+TABLE|PRAGMA\s+\w+|BEGIN\s+IMMEDIATE)\b",
    re.DOTALL,
)
# What the store may import of the toolkit: modules that import nothing above them.
STORE_MAY_IMPORT = {"envelope", "errors", "eventos", "settings", "store", "vocabulary"}


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sql_in(path: Path) -> list[str]:
    """SQL statements in the module's string literals (f-string parts included), with their line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.search(node.value):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value[:60]!r}")
    return found


def _runtime_imports(path: Path, known: frozenset[str]) -> set[str]:
    """Toolkit modules imported when the module is imported (not inside functions nor under
    ``if TYPE_CHECKING``); ``from pkg import submodule`` counts as the submodule."""
    found: set[str] = set()
    body = list(ast.parse(path.read_text(encoding="utf-8")).body)
    while body:
        node = body.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
            body += node.body + node.orelse
        elif isinstance(node, ast.Try):
            body += node.body + node.orelse + node.finalbody
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = {f"{node.module}.{alias.name}" for alias in node.names}
            found |= names & known or {node.module}
    return {name for name in found if name.startswith("orquestrador")}


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


def test_the_pattern_finds_the_stores_own_sql():
    """Guards the next test against passing because the pattern matches nothing."""
    found = [hit for path in sorted(STORE.rglob("*.py")) for hit in _sql_in(path)]
    for module in ("schema.py", "jobs.py", "retention.py", "columnar.py"):
        assert any(f"store/{module}:" in hit for hit in found), module


def test_no_module_outside_the_store_holds_sql():
    outside = [p for p in sorted(PACKAGE.rglob("*.py")) if STORE not in p.parents]
    found = [hit for path in outside for hit in _sql_in(path)]
    assert not found, "SQL belongs in orquestrador/store/:\n" + "\n".join(found)


def test_the_store_imports_nothing_that_uses_it():
    known = frozenset(_module(p) for p in PACKAGE.rglob("*.py"))
    for path in sorted(STORE.rglob("*.py")):
        above = {m for m in _runtime_imports(path, known) if m.split(".")[1] not in STORE_MAY_IMPORT}
        assert not above, f"{_module(path)} imports {sorted(above)}"


def test_the_package_imports_without_a_cycle():
    # The brokers' own modules are checked by tests/brokers/ (they are being reshaped there).
    paths = {_module(p): p for p in PACKAGE.rglob("*.py") if "brokers" not in p.relative_to(PACKAGE).parts}
    known = frozenset(paths)
    graph = {name: _runtime_imports(path, known) & known - {name} for name, path in paths.items()}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_a_worker_never_loads_the_frame_builders_nor_arrow():
    code = (
        "import sys, orquestrador, orquestrador.worker, orquestrador.store, orquestrador.cli.stats\n"
        "print(sorted(m for m in ('orquestrador.analysis', 'orquestrador.store.columnar', 'pandas',"
        " 'pyarrow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
