"""The store: the only part of the toolkit that holds SQL.

- :mod:`.schema` — the tables, opening a connection, a write transaction.
- :mod:`.jobs` — :class:`Store`: every write and read of the orchestrator's record of jobs.
- :mod:`.rows` — a job row, the filter all jobs queries share, what a result puts in its row.
- :mod:`.retention` — :class:`Retencao` and pruning finished jobs.
- :mod:`.columnar` — the jobs table as Arrow columns for ``resultados()`` (imports pyarrow).
- :mod:`.reader`, :mod:`.reader_process` — the process that runs Arrow's SQLite driver, so this
  process only ever loads Python's ``sqlite3`` (two SQLite libraries in one process lose data).
- :mod:`.stats` — the one job-statistics function of ``orq stats`` and ``metricas()``.

Pandas frames are built from what it returns in :mod:`orquestrador.analysis`.
"""

from orquestrador.store.jobs import Store
from orquestrador.store.rows import JobRow, jobs_filter
from orquestrador.store.schema import StoreBusy

__all__ = ["JobRow", "Store", "StoreBusy", "jobs_filter"]
