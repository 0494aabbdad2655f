"""`hodeictl host list` takes the shared -o option (it declared its own, table or json)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def _host_list(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).with_name("hodeictl")), "host", "list",
         "--database-url", database_url, *args],
        capture_output=True, text=True, timeout=120, check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("HODEI_")})


def test_host_list_prints_every_format(database_url: str) -> None:
    as_json = _host_list(database_url, "-o", "JSON")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == []
    as_yaml = _host_list(database_url, "-o", "yaml")
    assert as_yaml.returncode == 0 and as_yaml.stdout.strip() == "[]"
    table = _host_list(database_url)
    assert table.stdout.split() == ["NAME", "ADDRESS", "STATE", "AGENT", "WORKER", "LAST",
                                    "CONTACT", "HOST", "KEY"]
    bad = _host_list(database_url, "-o", "xml")
    assert bad.returncode == 2 and bad.stderr.startswith("hodeictl: --output: ")
    assert bad.stderr.count("\n") == 1
