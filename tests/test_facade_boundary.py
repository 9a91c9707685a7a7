"""Widgets, the CLI and the built-in plugins are clients of the facade's public API, like any
user's code: none of them reaches into a private attribute of ``Orquestrador``, ``Job`` or
``Lote`` (``orq._core``, ``orq._run``, ``job._orq``…)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.workers import ROOT

FACADE = ROOT / "orquestrador" / "facade"  # one package: its modules share the privates
MODULES = sorted(FACADE.glob("*.py"))


def _private_names() -> set[str]:
    """Every ``_name`` the facade's classes define: methods, slots and ``self._x`` attributes."""
    names: set[str] = set()
    nodes = [node for path in MODULES for node in ast.parse(path.read_text()).body]
    for node in nodes:
        if not isinstance(node, ast.ClassDef):
            continue
        for item in ast.walk(node):
            if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                names.add(item.name)
            elif isinstance(item, ast.Attribute) and ast.unparse(item.value) == "self":
                names.add(item.attr)
            elif isinstance(item, ast.Constant) and isinstance(item.value, str):
                names.add(item.value)  # __slots__
    # _repr_mimebundle_ and the like are Jupyter's display protocol, public by convention.
    return {n for n in names if n.startswith("_") and not n.endswith("_")}


def _reaches(path: Path, private: set[str]) -> list[str]:
    """``something._name`` where something is not the module's own ``self``/``cls``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute) and node.attr in private:
            own = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            if not own:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} .{node.attr}")
    return found


def test_the_facade_has_private_attributes_to_protect():
    private = _private_names()
    assert {"_core", "_loop", "_run", "_orq", "_row", "_frame", "_warn_unserved"} <= private, private


def test_no_module_outside_the_facade_uses_its_private_attributes():
    private = _private_names()
    sources = [p for d in ("orquestrador", "escavadores", "executores") for p in (ROOT / d).rglob("*.py")]
    assert len(sources) > 30
    found = [hit for path in sources if path.parent != FACADE for hit in _reaches(path, private)]
    assert found == [], "use (or add) a public method of the facade instead:\n" + "\n".join(found)
