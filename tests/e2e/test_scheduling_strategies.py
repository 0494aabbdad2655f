"""Strategies through a real server: the configured default and a per-job label."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.harness import ServerProcess


def test_configured_and_labelled_strategies_run_jobs(tmp_path: Path, database_url: str) -> None:
    server = ServerProcess(tmp_path, database_url, extra_config='strategy = "round-robin"')
    server.start()
    try:
        for label in ("", "hodei.io/strategy=most-capacity", "affinity.hodei.io/provider=local",
                      "anti-affinity.hodei.io/gpu="):
            args = ["-l", label] if label else []
            out = server.hodeictl("job", "run", *args, "--", "echo", "ok")
            assert out.returncode == 0, out.stderr
            assert out.stdout == b"ok\n"
        listing = server.hodeictl("job", "list", "-o", "json")
        states = [job["state"] for job in json.loads(listing.stdout)]
        assert states == ["succeeded"] * 4
    finally:
        server.stop()


def test_unknown_strategy_is_a_clear_config_error(tmp_path: Path, database_url: str) -> None:
    server = ServerProcess(tmp_path, database_url, extra_config='strategy = "round-robn"')
    server.launch()
    assert server.proc is not None
    assert server.proc.wait(timeout=60) != 0
    log = server.log_path.read_text()
    assert "unknown strategy 'round-robn'; did you mean 'round-robin'?" in log
    assert "Traceback" not in log
