"""A cancel reaches its agent once, with the user's reason, whichever replica it was asked of."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from hodei_api.v1 import jobs_pb2, jobs_pb2_grpc, workers_pb2
from tests.e2e.harness import BIN, ServerProcess

pytestmark = pytest.mark.e2e

# Ignores SIGTERM for a while, so that a second cancel would still find it running.
STUBBORN = "trap 'sleep 2; exit 0' TERM; echo started; while true; do sleep 0.1; done"


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def agent_on(server: ServerProcess, replica: str, log_path: Path) -> subprocess.Popen[bytes]:
    """An agent streaming to `server`, its worker labelled `replica=<replica>` by its
    bootstrap token, logging at debug level to `log_path`."""
    minted = subprocess.run(
        [str(BIN / "hodei-server"), "token", "create", "--database-url", server.database_url,
         "--label", f"replica={replica}", "--ttl", "10m"], capture_output=True, timeout=60)
    assert minted.returncode == 0, minted.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith("HODEI_")}
    env["HODEI_BOOTSTRAP_TOKEN"] = minted.stdout.decode().strip()
    return subprocess.Popen(
        [str(BIN / "hodei-agent"), "--server", server.address, "--name", f"on-{replica}",
         "--log-level", "DEBUG"],
        env=env, stdin=subprocess.DEVNULL, stdout=log_path.open("ab"),
        stderr=subprocess.STDOUT, start_new_session=True,
    )


@pytest.fixture
def replicas(tmp_path: Path, database_url: str) -> Iterator[list[ServerProcess]]:
    """Two server replicas, a and b, on one database, with no agents of their own."""
    pair = [ServerProcess(tmp_path / name, database_url, workers=0) for name in "ab"]
    try:
        for server in pair:
            server.workdir.mkdir()
            server.launch()
        for server in pair:
            server.wait_ready()
        yield pair
    finally:
        for server in pair:
            server.stop()


def cancel_messages(log_path: Path, job_id: str) -> list[str]:
    """What the agent logged of each cancel it received for `job_id`."""
    pattern = re.compile(rf"job={job_id} attempt=\d+: (cancel requested \(.*\)|not running; "
                         r"cancel ignored)")
    return [m.group(1) for m in pattern.finditer(log_path.read_text(errors="replace"))]


def run_and_cancel(channel: grpc.Channel, replica: str, reason: str) -> tuple[str, jobs_pb2.Job]:
    """Submit a stubborn job for the agent labelled `replica`, cancel it through `channel`
    once it runs; (its id, the job once finished)."""
    stub = jobs_pb2_grpc.JobServiceStub(channel)
    spec = jobs_pb2.JobSpec(command=["sh", "-c", STUBBORN], selector={"replica": replica})
    job_id = stub.SubmitJob(jobs_pb2.SubmitJobRequest(spec=spec), timeout=10).job.id

    def state() -> int:
        return stub.GetJob(jobs_pb2.GetJobRequest(id=job_id), timeout=10).state

    wait_for(lambda: state() == jobs_pb2.JOB_STATE_RUNNING, 60, f"job {job_id} to run")
    stub.CancelJob(jobs_pb2.CancelJobRequest(id=job_id, reason=reason), timeout=10)
    wait_for(lambda: state() == jobs_pb2.JOB_STATE_CANCELLED, 60, f"job {job_id} to end")
    time.sleep(1.0)  # time for a late second cancel to arrive
    return job_id, stub.GetJob(jobs_pb2.GetJobRequest(id=job_id), timeout=10)


def test_a_cancel_reaches_the_agent_once_with_its_reason_from_either_replica(
    tmp_path: Path, replicas: list[ServerProcess],
) -> None:
    a, _ = replicas
    logs = {replica: tmp_path / f"agent-{replica}.log" for replica in "ab"}
    agents = [agent_on(server, replica, logs[replica])
              for server, replica in zip(replicas, "ab", strict=True)]
    try:
        ready = {workers_pb2.WORKER_STATE_READY, workers_pb2.WORKER_STATE_BUSY}
        wait_for(lambda: sum(w.state in ready for w in a.list_workers()) == 2, 60,
                 "both agents to connect")
        received: dict[str, list[str]] = {}
        reasons: dict[str, str] = {}
        with a.channel() as channel:
            # Asked of replica a: for a job on b's agent, then for one on a's own.
            for replica in "ba":
                reason = f"asked on replica a, run on {replica}"
                job_id, job = run_and_cancel(channel, replica, reason)
                received[replica] = cancel_messages(logs[replica], job_id)
                reasons[replica] = job.reason
        print(f"cancel messages received by the agent: across replicas "
              f"{len(received['b'])}, on the same replica {len(received['a'])}")
        assert received == {
            "b": ["cancel requested (asked on replica a, run on b)"],
            "a": ["cancel requested (asked on replica a, run on a)"],
        }
        assert reasons == {"b": "asked on replica a, run on b",
                           "a": "asked on replica a, run on a"}
    finally:
        for proc in agents:
            proc.terminate()
        for proc in agents:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
