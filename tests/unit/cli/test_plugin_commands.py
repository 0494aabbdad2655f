"""`hodeictl plugin list`."""

from __future__ import annotations

import json

from hodeictl_fakes import invoke


def test_plugin_list_table_and_json() -> None:
    table = invoke("plugin", "list")
    listed = invoke("plugin", "list", "-o", "json")
    assert table.exit_code == 0, table.output
    row = next(line for line in table.stdout.splitlines() if line.startswith("strategies"))
    for cell in ("hodei", "0.1.0", "least-loaded", "round-robin", "loaded"):
        assert cell in row
    plugins = {p["name"]: p for p in json.loads(listed.stdout)}
    assert plugins["local"]["distribution"] == "hodei"
    assert plugins["local"]["status"] == "loaded"
    assert plugins["local"]["provides"] == ["provider:local"]
