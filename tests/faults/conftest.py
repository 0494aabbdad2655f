"""Fixtures for the fault-injection suite: figures and servers that are always cleaned up."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults.harness import FaultServer, agents_dialing, kill_groups

Recorder = Callable[[str, float], None]


@pytest.fixture(scope="session")
def figures_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where every figure of the session goes (HODEI_FIGURES_FILE overrides)."""
    override = os.environ.get("HODEI_FIGURES_FILE")
    return Path(override) if override else tmp_path_factory.getbasetemp() / "figures.json"


@pytest.fixture
def record_figure(figures_path: Path, request: pytest.FixtureRequest) -> Recorder:
    """Print `FIGURE: test: name = value` and append it to the session's figures file."""

    def record(name: str, value: float) -> None:
        print(f"FIGURE: {request.node.name}: {name} = {value}", flush=True)
        figures: list[dict[str, Any]] = []
        if figures_path.exists():
            figures = json.loads(figures_path.read_text())
        figures.append({"test": request.node.nodeid, "figure": name, "value": value})
        figures_path.write_text(json.dumps(figures, indent=1))

    return record


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[FaultServer]]:
    """Servers a test starts (append them); stopped, and their orphan agents killed, after."""
    started: list[FaultServer] = []
    yield started
    for server in started:
        server.stop()
    for server in started:
        if server.address:
            kill_groups(agents_dialing(server.address))
