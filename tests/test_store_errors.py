"""Store errors say what to do (item 12 of #13): a file that is not a database, or a read-only
one, is a ConfigError at start that names the file and the fix."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from orquestrador import AsyncOrquestrador, Orquestrador
from orquestrador.errors import ConfigError
from orquestrador.store import Store


def test_a_file_that_is_not_a_database_is_refused_naming_it(tmp_path: Path):
    path = tmp_path / ".orquestrador" / "orquestrador.db"
    path.parent.mkdir()
    path.write_bytes(b"these are my notes, not SQLite\n" * 100)
    with pytest.raises(ConfigError) as caught:
        Orquestrador("memory://")
    message = str(caught.value)
    assert str(path) in message and "not a database" in message
    assert "move it away" in message and "ORQ_HOME" in message
    with pytest.raises(ConfigError, match="not a database"):
        Store(path)  # orq stats and orq trace read it the same way


@pytest.fixture
def read_only(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Make a file read-only even for root (an immutable file), or for this user (chmod)."""
    made: list[Path] = []

    def make(path: Path) -> None:
        if os.geteuid() != 0:
            path.chmod(0o444)
        elif shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(path)]).returncode:
            pytest.skip("cannot make a file read-only for root here (no chattr on this filesystem)")
        made.append(path)

    yield make
    for path in made:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(path)], check=False)
        path.chmod(0o644)


def test_a_read_only_store_is_refused_at_start_not_at_the_first_launch(tmp_path: Path, read_only):  # type: ignore[no-untyped-def]
    home = tmp_path / ".orquestrador"
    Store(home / "orquestrador.db").close()  # an existing store, with its tables
    read_only(home / "orquestrador.db")
    with pytest.raises(ConfigError) as caught:
        AsyncOrquestrador("memory://")
    message = str(caught.value)
    assert str(home / "orquestrador.db") in message and "readonly" in message
    assert "writable" in message and "ORQ_HOME" in message
