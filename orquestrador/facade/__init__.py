"""The synchronous API for scripts and notebooks: ``Orquestrador``, ``Job`` and ``Lote``.

Every call runs the asyncio core on a private loop thread (``session``), so it works the same in
a plain script and inside Jupyter's running loop; ``client`` launches, ``reads`` reads,
``handles`` are what a launch returns. pandas is imported only by the methods that return
DataFrames, so workers that import the package stay small.
"""

from orquestrador.facade.client import Orquestrador
from orquestrador.facade.handles import Job, Lote
from orquestrador.facade.messaging import Assinatura

__all__ = ["Assinatura", "Job", "Lote", "Orquestrador"]
