"""`--log-format json`: every line the server and its agents write parses, and the lines
about a job name it, its attempt, its worker and its correlation id."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.harness import ServerProcess

pytestmark = pytest.mark.e2e


def test_server_and_agent_log_one_json_object_a_line(
        tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HODEI_LOG_FORMAT", "json")
    server = ServerProcess(tmp_path, database_url, workers=1).start()
    try:
        # A failure: the agent logs a job's routine success at debug level only.
        out = server.hodeictl("job", "run", "--correlation-id", "trace-1", "--", "false")
        assert out.returncode == 1, out.stderr
        job_id = json.loads(server.hodeictl("job", "list", "-o", "json").stdout)[0]["id"]
    finally:
        server.stop()
    lines = [json.loads(line) for line in server.log_path.read_text().splitlines() if line]
    assert lines
    for line in lines:
        assert {"time", "level", "message", "logger"} <= set(line)
    about = [line for line in lines if line.get("job") == job_id]
    submitted = [line for line in about if line["message"].endswith("submitted")]
    assert submitted and submitted[0]["correlation_id"] == "trace-1"
    ended = [line for line in about if " ended " in line["message"]]
    assert ended and ended[0]["attempt"] == 1 and ended[0]["worker"]
    agent = [line for line in about if line["logger"].startswith("hodei_agent")]
    assert agent and all(line["worker"] and line["attempt"] == 1 for line in agent)
