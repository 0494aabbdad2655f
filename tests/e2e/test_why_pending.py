"""A job no worker can take says why, in `job get` and once on `job run`'s stderr."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import ServerProcess, hodeictl_argv


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path, database_url, workers=1, slots=1,
                         extra_config="reconcile_interval = 0.3\n").start()
    try:
        yield proc
    finally:
        proc.stop()


def _waiting(server: ServerProcess, job_id: str, timeout: float = 30.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        got = server.hodeictl("job", "get", job_id, "-o", "json")
        # A name may not be there yet: `job run` in another process is still submitting.
        job = json.loads(got.stdout) if got.returncode == 0 else {}
        if job.get("waiting_reason") or time.monotonic() > deadline:
            return dict(job)
        time.sleep(0.2)


def test_a_job_no_worker_matches_says_so(server: ServerProcess) -> None:
    job_id = server.hodeictl("job", "submit", "-s", "os=plan9", "--", "true").stdout.decode()
    job = _waiting(server, job_id.strip())
    assert job["state"] == "pending"
    assert job["waiting_reason"] == "no worker matches os=plan9, and no provider starts one"
    shown = server.hodeictl("job", "get", job_id.strip()).stdout.decode()
    assert "Waiting:" in shown and "no worker matches os=plan9" in shown
    # Placed, it no longer says it waits.
    server.hodeictl("job", "cancel", job_id.strip())


def test_a_full_worker_is_named_and_the_reason_goes_once_placed(server: ServerProcess) -> None:
    busy = server.hodeictl("job", "submit", "--", "sleep", "6").stdout.decode().strip()
    queued = server.hodeictl("job", "submit", "--", "true").stdout.decode().strip()
    job = _waiting(server, queued)
    assert job["waiting_reason"] == (
        "the one worker connected is busy (1 of 1 slots in use); provider local is at its "
        "maximum of 1 worker")
    done = server.hodeictl("job", "logs", "-f", queued)
    assert done.returncode == 0, done.stderr
    final = json.loads(server.hodeictl("job", "get", queued, "-o", "json").stdout)
    assert final["state"] == "succeeded" and final["waiting_reason"] == ""
    assert json.loads(server.hodeictl("job", "get", busy, "-o", "json").stdout)["state"] in (
        "running", "succeeded")


def test_job_run_says_once_on_stderr_why_it_waits(server: ServerProcess) -> None:
    env = {**os.environ, "HODEI_SERVER": server.address, "HODEI_TOKEN": server.token}
    run = subprocess.Popen([*hodeictl_argv(), "job", "run", "--name", "why-run", "-s",
                            "os=plan9", "--", "true"], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    try:
        job = _waiting(server, "why-run")
        assert job["waiting_reason"]
        time.sleep(5)  # two more polls: the reason is not said again
    finally:
        server.hodeictl("job", "cancel", "why-run")
        _, stderr = run.communicate(timeout=60)
    lines = [line for line in stderr.decode().splitlines() if "is waiting" in line]
    assert lines == [f"Job {job['id']} is waiting: no worker matches os=plan9, and no "
                     "provider starts one"]
    assert run.returncode == 130  # cancelled


def test_an_unknown_strategy_is_refused_at_submit(server: ServerProcess) -> None:
    out = server.hodeictl("job", "submit", "-l", "hodei.io/strategy=fastest", "--", "true")
    assert out.returncode == 2
    assert out.stderr.decode().startswith(
        "hodeictl: invalid job: label hodei.io/strategy: no scheduling strategy 'fastest' "
        "(this server has: ")
    assert json.loads(server.hodeictl("job", "list", "-o", "json").stdout) == []


def test_job_get_shows_the_timeline_of_waits_retries_and_the_end(server: ServerProcess) -> None:
    waiting = server.hodeictl("job", "submit", "-s", "os=plan9", "--", "true").stdout.decode()
    _waiting(server, waiting.strip())
    shown = server.hodeictl("job", "get", waiting.strip()).stdout.decode()
    assert [line.split()[2] for line in shown.splitlines()
            if line[:4].isdigit()] == ["created", "waiting"]
    assert "no worker matches os=plan9" in shown.splitlines()[-1]
    server.hodeictl("job", "cancel", waiting.strip())

    retried = server.hodeictl("job", "submit", "--max-attempts", "2", "--retry-on", "failed",
                              "--backoff", "0", "--", "sh", "-c", "exit 3").stdout.decode()
    done = server.hodeictl("job", "wait", retried.strip())
    assert done.returncode == 3, done.stderr
    job = json.loads(server.hodeictl("job", "get", retried.strip(), "-o", "json").stdout)
    kinds = [event["type"] for event in job["events"]]
    assert kinds[0] == "job.created" and kinds[-1] == "job.failed", kinds
    assert kinds.count("job.assigned") == 2 and kinds.count("job.running") == 2, kinds
    assert all(event["aggregate_id"] == job["id"] for event in job["events"])
