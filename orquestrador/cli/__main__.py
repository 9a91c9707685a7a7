"""``python -m orquestrador.cli``: the ``orq`` command of this interpreter (what workers re-run)."""

from orquestrador.cli import main

main()
