"""`hodeictl version` and `plugin list --server` against a real server."""

from __future__ import annotations

import importlib.metadata
import json

from tests.e2e.harness import ServerProcess


def test_version_names_client_and_server(server: ServerProcess) -> None:
    out = server.hodeictl("version")
    assert out.returncode == 0, out.stderr
    version = importlib.metadata.version("hodei")
    assert out.stdout.decode().splitlines() == [
        f"hodeictl {version}", f"server   {version} ({server.address})"]


def test_plugin_list_server_shows_what_the_server_loaded(server: ServerProcess) -> None:
    out = server.hodeictl("plugin", "list", "--server", "-o", "json")
    assert out.returncode == 0, out.stderr
    plugins = {p["name"]: p for p in json.loads(out.stdout)}
    assert plugins["local"]["status"] == "loaded"
    assert "provider:local" in plugins["local"]["provides"]
    table = server.hodeictl("plugin", "list", "--server").stdout.decode()
    assert "local" in table and "loaded" in table
