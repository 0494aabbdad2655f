"""`context view` and `context delete`."""

from __future__ import annotations

import json
from pathlib import Path

from hodeictl_fakes import invoke


def test_view_shows_where_the_token_comes_from_never_the_token(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("hodei_secret_token\n")
    assert invoke("context", "set", "prod", "--server", "prod.example.org:7443",
                  "--token-file", str(token_file)).exit_code == 0
    assert invoke("context", "use", "prod").exit_code == 0
    shown = invoke("context", "view")
    assert shown.exit_code == 0, shown.output
    assert "hodei_secret_token" not in shown.stdout
    lines = dict(line.split(":", 1) for line in shown.stdout.splitlines())
    assert lines["Server"].strip() == "prod.example.org:7443"
    assert lines["Token"].strip() == f"from {token_file}"
    assert lines["Current"].strip() == "yes"
    local = json.loads(invoke("context", "view", "local", "-o", "json").stdout)
    assert local["name"] == "local" and local["current"] == "no"


def test_delete_removes_a_context_and_falls_back_to_local() -> None:
    invoke("context", "set", "prod", "--server", "prod.example.org:7443")
    invoke("context", "use", "prod")
    deleted = invoke("context", "delete", "prod")
    assert deleted.exit_code == 0
    assert deleted.stderr == "Context 'prod' deleted. Using context 'local'.\n"
    listed = json.loads(invoke("context", "list", "-o", "json").stdout)
    assert [c["name"] for c in listed] == ["local"] and listed[0]["current"]
    missing = invoke("context", "delete", "prod")
    assert missing.exit_code == 1 and "context 'prod' not found" in missing.stderr
    local = invoke("context", "delete", "local")
    assert local.exit_code == 2 and "cannot be deleted" in local.stderr


def test_version_without_a_running_stack_starts_nothing() -> None:
    from hodeictl import embedded

    result = invoke("version")
    assert result.exit_code == 0
    client, server = result.stdout.splitlines()
    assert client.startswith("hodeictl ")
    assert server == "server   - (the local stack is not running; hodeictl up)"
    assert embedded.read_stack(embedded.home_dir()) is None
    assert invoke("version", "--client").stdout.splitlines() == [client]
