"""Import boundaries: the agent installs with grpcio + protobuf only; hodeictl never
imports the server."""

from __future__ import annotations

import subprocess
import sys

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
                                  "typer", "rich", "textual", "pluggy", "cryptography"]),
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
