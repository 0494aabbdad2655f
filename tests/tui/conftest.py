from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.harness import ServerProcess
from tests.security.hostile_harness import module_database_url_fixture  # noqa: F401


@pytest.fixture(scope="module")
def tui_server(tmp_path_factory: pytest.TempPathFactory,
               module_database_url: str) -> Iterator[ServerProcess]:
    """One real server with two local agents of four slots, for a test module."""
    proc = ServerProcess(tmp_path_factory.mktemp("tui-server"), module_database_url,
                         workers=2).start()
    try:
        yield proc
    finally:
        proc.stop()
