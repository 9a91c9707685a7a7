"""The ``env`` fixture: an orchestrator and a worker on a private in-memory broker."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from orquestrador import Orquestrador
from orquestrador.plugins import Plugin
from tests.notebook.helpers import BackgroundWorker, pagina


@pytest.fixture
def env() -> Iterator[tuple[Orquestrador, str, Plugin]]:
    url = f"memory://{uuid.uuid4().hex}"
    nome = f"pagina_{uuid.uuid4().hex[:6]}"
    worker = BackgroundWorker(url, nome)
    orq = Orquestrador(url)
    try:
        yield orq, nome, Plugin("escavador", nome, pagina, "tests")
    finally:
        orq.close()
        worker.stop()
