"""Import boundaries: the agent installs with grpcio + protobuf only; hodeictl never
imports the server; the server's layers import downwards only."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

CHECK = """
import sys
import {module}
bad = sorted(m for m in sys.modules if m.split('.')[0] in {forbidden!r})
print(','.join(bad))
"""


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        # No cryptography either: the agent makes its key and CSR with the standard library.
        ("hodei_agent.__main__", ["hodei_server", "hodei_plugins", "hodeictl", "psycopg",
                                  "typer", "rich", "textual", "pluggy", "cryptography",
                                  "prometheus_client"]),
        ("hodeictl.app", ["hodei_server", "hodei_agent", "psycopg"]),
        ("hodei_api.v1.agent_pb2_grpc", ["hodei_server", "hodei_agent", "hodeictl"]),
    ],
)
def test_module_does_not_import(module: str, forbidden: list[str]) -> None:
    out = subprocess.run(
        [sys.executable, "-c", CHECK.format(module=module, forbidden=set(forbidden))],
        capture_output=True, text=True, check=True,
    )
    assert out.stdout.strip() == "", f"{module} imports {out.stdout.strip()}"


# The server's layers, lowest first: a package imports only from its own layer and those
# below it. errors.py, config.py and validation.py are shared by every layer above the
# store; app.py wires the layers, cli/ and embedded.py run it.
SERVER = Path(__file__).resolve().parents[2] / "server" / "hodei_server"
LAYER_OF = {"store": 0, "security": 1, "dispatch": 2, "api": 3}
ABOVE_LAYERS = {"app", "embedded", "cli", "__main__"}


def _server_imports() -> list[tuple[str, str]]:
    """(importing module, imported module) for every import of hodei_server in the server."""
    found = []
    for path in sorted(SERVER.rglob("*.py")):
        module = ".".join(path.relative_to(SERVER.parent).with_suffix("").parts)
        module = module.removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            found += [(module, name) for name in names if name.startswith("hodei_server.")]
    return found


def _room(module: str) -> str:
    """The package (store, api, ...) or top-level module a module of the server is in."""
    return module.split(".")[1]


def test_each_server_layer_imports_only_from_below() -> None:
    imports = _server_imports()
    assert imports, "no imports found: has the server moved?"
    upward = []
    for importer, imported in imports:
        here, there = _room(importer), _room(imported)
        if here in LAYER_OF and (there in ABOVE_LAYERS
                                 or LAYER_OF.get(there, -1) > LAYER_OF[here]):
            upward.append(f"{importer} imports {imported}")
    assert upward == []


def test_the_store_imports_nothing_but_the_store_and_the_errors() -> None:
    outside = [f"{importer} imports {imported}" for importer, imported in _server_imports()
               if _room(importer) == "store" and _room(imported) not in ("store", "errors")]
    assert outside == []


def test_nothing_imports_the_command_line_but_its_entry_point() -> None:
    into_cli = [f"{importer} imports {imported}" for importer, imported in _server_imports()
                if _room(imported) == "cli" and _room(importer) not in ("cli", "__main__")]
    assert into_cli == []
