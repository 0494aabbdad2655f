"""SIGTERM the agent mid-job: it drains, the job finishes, every line is stored once."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.faults.conftest import Recorder
from tests.faults.harness import (
    FaultServer,
    get_job,
    hodeictl_logs,
    kill_groups,
    line_faults,
    start_agent,
    state_of,
    stored_output,
    submit,
    wait_for,
)

pytestmark = pytest.mark.e2e

LINES = 200
SCRIPT = f"for i in $(seq 1 {LINES}); do echo line-$i; sleep 0.01; done"


def test_sigterm_agent_mid_job_loses_no_line(
    tmp_path: Path, database_url: str, servers: list[FaultServer], record_figure: Recorder,
) -> None:
    server = FaultServer(tmp_path, database_url, workers=0)
    servers.append(server)
    server.start()
    agent = start_agent(database_url, server.address, tmp_path, "drainee")
    try:
        server.wait_workers(1, 30)
        with server.channel() as channel:
            job_id = submit(channel, script=SCRIPT)
            wait_for(lambda: state_of(channel, job_id) == "RUNNING", 30, "the job to run")
            # Let it print a while, so the signal lands in the middle of the output.
            wait_for(lambda: stored_output(database_url, job_id)[0].count(b"\n") >= 20, 30,
                     "the first lines to be stored")
            agent.send_signal(signal.SIGTERM)
            started = time.monotonic()
            exit_code = agent.wait(timeout=60)
            drain_seconds = time.monotonic() - started
            state = state_of(channel, job_id)
            attempts = len(get_job(channel, job_id).attempts)
        logs = hodeictl_logs(server, job_id)
    finally:
        if agent.poll() is None:
            kill_groups([agent.pid])
            agent.wait()
    expected = [f"line-{i}".encode() for i in range(1, LINES + 1)]
    lost, duplicated = line_faults(expected, logs.stdout)
    record_figure("lines lost", lost)
    record_figure("duplicate lines", duplicated)
    record_figure("drain time (s)", round(drain_seconds, 2))
    agent_log = (tmp_path / "drainee.log").read_text(errors="replace")
    assert exit_code == 0, agent_log
    assert state == "SUCCEEDED", server.log_text()
    assert attempts == 1
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout == b"".join(line + b"\n" for line in expected)
    assert (lost, duplicated) == (0, 0)
