"""A module the python executor must never import: importing it leaves a trace."""

from __future__ import annotations

import os

IMPORTED_MARKER = os.environ.get("ORQ_TEST_PROIBIDO_MARKER")
if IMPORTED_MARKER:
    with open(IMPORTED_MARKER, "w") as fh:
        fh.write("imported")


def qualquer() -> dict[str, str]:
    return {"nao": "devia rodar"}
