from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import ServerProcess


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[ServerProcess]:
    """A real server with two local agents of four slots each."""
    proc = ServerProcess(tmp_path, database_url).start()
    try:
        yield proc
    finally:
        proc.stop()
