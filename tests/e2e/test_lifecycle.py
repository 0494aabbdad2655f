"""Retries, re-runs and draining, end to end."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.e2e.harness import ServerProcess
from tests.e2e.test_core_loop import job_json, wait_state

pytestmark = pytest.mark.e2e


def test_a_failure_is_retried_when_the_policy_says_so(server: ServerProcess,
                                                        tmp_path: Path) -> None:
    marker = tmp_path / "first-attempt-done"
    script = f"echo attempt; test -f {marker} || {{ touch {marker}; exit 5; }}"
    out = server.hodeictl("job", "run", "--max-attempts", "2", "--retry-on", "failed",
                          "--backoff", "0.2s", "--", "sh", "-c", script)
    assert out.returncode == 0, out.stderr
    assert out.stdout == b"attempt\nattempt\n"  # the output of both attempts, in order
    listing = json.loads(server.hodeictl("job", "list", "-o", "json").stdout)
    job = job_json(server, str(listing[0]["id"]))
    attempts = job["attempts"]
    assert isinstance(attempts, list)
    assert [(a["state"], a.get("exit_code")) for a in attempts] == [("failed", 5),
                                                                     ("succeeded", 0)]


def test_without_a_policy_a_failure_is_final(server: ServerProcess) -> None:
    out = server.hodeictl("job", "run", "--max-attempts", "3", "--", "sh", "-c", "exit 7")
    assert out.returncode == 7
    listing = json.loads(server.hodeictl("job", "list", "-o", "json").stdout)
    assert len(job_json(server, str(listing[0]["id"]))["attempts"]) == 1  # type: ignore[arg-type]


def test_job_retry_runs_a_finished_job_again(server: ServerProcess) -> None:
    job_id = server.hodeictl("job", "submit", "--", "sh", "-c", "echo run; exit 3")
    ident = job_id.stdout.decode().strip()
    wait_state(server, ident, {"FAILED"}, 30)
    early = server.hodeictl("job", "retry", ident)
    assert early.returncode == 0, early.stderr
    wait_state(server, ident, {"FAILED"}, 30)
    job = job_json(server, ident)
    assert len(job["attempts"]) == 2  # type: ignore[arg-type]
    logs = server.hodeictl("job", "logs", ident)
    assert logs.stdout == b"run\nrun\n"


def test_job_retry_refuses_a_running_job(server: ServerProcess) -> None:
    ident = server.hodeictl("job", "submit", "--", "sleep", "30").stdout.decode().strip()
    wait_state(server, ident, {"RUNNING"}, 30)
    out = server.hodeictl("job", "retry", ident)
    assert out.returncode == 1
    assert b"only a finished job can be retried" in out.stderr
    server.hodeictl("job", "cancel", ident)


def test_draining_a_worker_lets_its_jobs_finish(server: ServerProcess, tmp_path: Path) -> None:
    # The jobs run until told to end, however slow the machine is to start them all.
    release = tmp_path / "release"
    ids = [server.hodeictl("job", "submit", "--", "sh", "-c",
                           f"while [ ! -e {release} ]; do sleep 0.1; done; echo done-{i}")
           .stdout.decode().strip() for i in range(6)]
    for ident in ids:
        wait_state(server, ident, {"RUNNING"}, 30)
    workers = json.loads(server.hodeictl("worker", "list", "-o", "json").stdout)
    target = next(w for w in workers if w["running_jobs"] > 0)
    drained = server.hodeictl("worker", "drain", target["id"])
    assert drained.returncode == 0, drained.stderr
    assert b"draining" in drained.stdout
    release.touch()
    for i, ident in enumerate(ids):
        wait_state(server, ident, {"SUCCEEDED"}, 30)
        assert server.hodeictl("job", "logs", ident).stdout == f"done-{i}\n".encode()
    deadline = time.monotonic() + 30
    state = ""
    while time.monotonic() < deadline:
        everyone = json.loads(server.hodeictl("worker", "list", "--all", "-o", "json").stdout)
        state = next(w["state"] for w in everyone if w["id"] == target["id"])
        if state == "terminated":
            break
        time.sleep(0.2)
    assert state == "terminated"
    again = server.hodeictl("worker", "drain", target["id"])
    assert again.returncode == 1
    assert b"only a connected worker can be drained" in again.stderr
