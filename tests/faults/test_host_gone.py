"""kill -9 an agent and its job (host gone): LOST after the TTL, retried once elsewhere."""

from __future__ import annotations

import statistics
import time
import uuid
from pathlib import Path

import pytest

from tests.faults.conftest import Recorder
from tests.faults.harness import (
    FaultServer,
    agent_named,
    get_job,
    kill_groups,
    processes_with_arg,
    state_of,
    submit,
    wait_for,
)

pytestmark = pytest.mark.e2e

RUNS = 5
TTL = 3.0


def test_host_gone_job_is_lost_within_ttl_and_retried_once(
    tmp_path: Path, database_url: str, servers: list[FaultServer], record_figure: Recorder,
) -> None:
    # A host that is gone does not come back: no restart of the killed agent in place.
    server = FaultServer(tmp_path, database_url, workers=2, slots=1, heartbeat_ttl=TTL,
                         restart_agents=False)
    servers.append(server)
    server.start()
    latencies: list[float] = []
    attempts: list[int] = []
    with server.channel() as channel:
        for run in range(RUNS):
            server.wait_workers(2, 60)
            flag = tmp_path / f"ran-{run}"
            tag = f"300.{uuid.uuid4().int % 10**9:09d}"
            # The first attempt blocks; a retry finds the flag and succeeds at once.
            script = f"if [ -e {flag} ]; then echo retried; else touch {flag}; sleep {tag}; fi"
            job_id = submit(channel, script=script, max_attempts=2)
            wait_for(lambda j=job_id: state_of(channel, j) == "RUNNING", 30, "the job to run")
            wait_for(lambda t=tag: processes_with_arg(t), 10, "the job's process")
            job = get_job(channel, job_id)
            [worker] = [w for w in server.list_workers() if w.id == job.worker_id]
            kill_groups([agent_named(worker.name)])
            killed = time.monotonic()
            wait_for(lambda t=tag: not processes_with_arg(t), 5, "the job's process to die")

            def left_running(j: str = job_id) -> bool:
                current = get_job(channel, j)
                return current.attempt > 1 or state_of(channel, j) != "RUNNING"

            latencies.append(wait_for(left_running, 4 * TTL + 10, "the job to leave RUNNING"))
            wait_for(lambda j=job_id: state_of(channel, j) == "SUCCEEDED", 60,
                     "the retry to succeed")
            done = get_job(channel, job_id)
            attempts.append(len(done.attempts))
            assert done.attempts[0].worker_id != done.attempts[-1].worker_id
            print(f"run {run}: detected after {latencies[-1]:.2f}s, "
                  f"{len(done.attempts)} attempts ({time.monotonic() - killed:.2f}s to success)")
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    record_figure("detection latency p50 (s)", round(statistics.median(latencies), 2))
    record_figure("detection latency p99 (s)", round(p99, 2))
    record_figure("attempts per job (max)", max(attempts))
    assert attempts == [2] * RUNS, server.log_text()[-5000:]
    # LOST within the TTL plus one heartbeat interval and one reconcile interval (+ slack).
    assert max(latencies) < TTL + server.heartbeat_interval + server.reconcile_interval + 1.5
