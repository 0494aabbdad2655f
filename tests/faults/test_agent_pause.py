"""SIGSTOP an agent past its lease, then SIGCONT: its late output and result are refused."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psycopg
import pytest

from hodei_api.v1 import jobs_pb2
from tests.faults.conftest import Recorder
from tests.faults.harness import FaultServer, agent_named, get_job, state_of, submit, wait_for

pytestmark = pytest.mark.e2e

TTL = 3.0


def test_a_paused_agent_cannot_write_after_its_lease(
    tmp_path: Path, database_url: str, servers: list[FaultServer], record_figure: Recorder,
) -> None:
    server = FaultServer(tmp_path, database_url, workers=2, slots=1, heartbeat_ttl=TTL)
    servers.append(server)
    server.start()
    flag = tmp_path / "first-attempt"
    # The first attempt prints for ~4 s; the retry finds the flag and prints once.
    script = (f"if [ -e {flag} ]; then echo second; else touch {flag}; "
              "for i in $(seq 1 40); do echo first-$i; sleep 0.1; done; fi")
    with server.channel() as channel:
        # The new leader's start-up grace (one TTL) must be over before leases expire.
        time.sleep(TTL)
        job_id = submit(channel, script=script, max_attempts=2)
        wait_for(lambda: state_of(channel, job_id) == "RUNNING", 30, "the job to run")
        first = get_job(channel, job_id)
        [worker] = [w for w in server.list_workers() if w.id == first.worker_id]
        agent = agent_named(worker.name)
        os.kill(agent, signal.SIGSTOP)
        try:
            wait_for(lambda: state_of(channel, job_id) == "SUCCEEDED", 4 * TTL + 20,
                     "the replacement attempt to succeed")
            time.sleep(5)  # the first attempt's process ends meanwhile; its agent is frozen
        finally:
            os.kill(agent, signal.SIGCONT)
        # Give the agent time to wake, find its stream closed, reconnect and resend.
        time.sleep(3 * server.heartbeat_interval + 3)
        done = get_job(channel, job_id)
    assert done.state == jobs_pb2.JOB_STATE_SUCCEEDED
    assert [a.attempt for a in done.attempts] == [1, 2]
    first_attempt = done.attempts[0]
    assert first_attempt.worker_id == worker.id
    assert done.attempts[1].worker_id != worker.id
    with psycopg.connect(database_url) as conn:
        [(state, reason)] = conn.execute(
            "SELECT state, reason FROM job_attempts WHERE job_id = %s AND attempt = 1",
            (job_id,)).fetchall()
        [(stale,)] = conn.execute(
            "SELECT count(*) FROM job_logs l JOIN job_attempts a"
            " ON a.job_id = l.job_id AND a.attempt = l.attempt"
            " WHERE l.job_id = %s AND l.attempt = 1 AND l.created_at > a.finished_at",
            (job_id,)).fetchall()
    record_figure("stale writes accepted", stale)
    assert state == "LOST", reason  # the late SUCCEEDED of attempt 1 was refused
    assert stale == 0
    # The woken agent did come back and was fenced (not merely silent).
    assert "after being declared lost" in server.log_text()
