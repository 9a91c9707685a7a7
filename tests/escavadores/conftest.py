"""Two loopback sites (two origins) from :mod:`tests.escavadores.servidor`, for the shared checks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.escavadores.servidor import Site, servir


@pytest.fixture(scope="module")
def origem() -> Iterator[Site]:
    with servir() as s:
        yield s


@pytest.fixture(scope="module")
def outra_origem() -> Iterator[Site]:
    with servir() as s:
        yield s
