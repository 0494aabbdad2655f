"""The agent must install on a bare host: it imports only the standard library, grpcio,
protobuf and hodei_api."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import hodei_agent

ALLOWED = {"grpc", "google", "hodei_api", "hodei_agent"}
# Imported inside a function, only when the option that needs it is given (the agent
# without it must not import them: tests/unit/test_boundaries.py).
OPTIONAL = {"exporter.py": {"prometheus_client"}}
PACKAGE = Path(hodei_agent.__file__).parent


def imported_top_levels(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_agent_imports_only_what_a_bare_host_has() -> None:
    modules = sorted(PACKAGE.glob("*.py"))
    assert len(modules) > 5
    for path in modules:
        foreign = (imported_top_levels(path) - ALLOWED - set(sys.stdlib_module_names)
                   - OPTIONAL.get(path.name, set()))
        assert not foreign, f"{path.name} imports {sorted(foreign)}"


def test_agent_modules_stay_small() -> None:
    for path in PACKAGE.glob("*.py"):
        assert len(path.read_text().splitlines()) < 400, path.name
