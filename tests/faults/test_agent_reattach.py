"""kill -9 an agent (not its jobs) and restart it with the same state dir.

Before the TTL the restarted agent is the same worker and re-attaches to the job, which is
not run again; after the TTL the job's processes were stopped by the lease watchdog and the
job is retried once, never with two attempts alive at once.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from hodei_api.v1 import jobs_pb2
from hodei_plugins.local.provider import MIN_UPTIME_FOR_RESTART
from tests.faults.conftest import Recorder
from tests.faults.harness import (
    FINAL,
    FaultServer,
    get_job,
    hodeictl_logs,
    kill_groups,
    line_faults,
    processes_with_arg,
    start_agent,
    state_of,
    stored_output,
    submit,
    wait_for,
)

pytestmark = pytest.mark.e2e

LINES = 300


def numbered_lines(starts: Path, lines: int, pause: float, exit_code: int = 0) -> str:
    """A job that notes each start of its process in `starts`, then prints numbered lines."""
    return (f'echo "$HODEI_JOB_ATTEMPT" >> {starts}; '
            f"for i in $(seq 1 {lines}); do echo line-$i; sleep {pause}; done; exit {exit_code}")


def job_command(script: str, marker: str) -> list[str]:
    """`sh -c script marker`: the marker names the job's shell among the machine's processes."""
    return ["sh", "-c", script, marker]


def kill9(agent: subprocess.Popen[bytes]) -> None:
    """SIGKILL the agent process only: its jobs, in process groups of their own, go on."""
    os.kill(agent.pid, signal.SIGKILL)
    agent.wait()


def state_name(job: jobs_pb2.Job) -> str:
    return jobs_pb2.JobState.Name(job.state).removeprefix("JOB_STATE_")


def stored_lines(database_url: str, job_id: str) -> int:
    return stored_output(database_url, job_id)[0].count(b"\n")


def stop(agent: subprocess.Popen[bytes], marker: str) -> None:
    if agent.poll() is None:
        kill_groups([agent.pid])
        agent.wait()
    for pid in processes_with_arg(marker):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def reattach_server(
    tmp_path: Path, database_url: str, servers: list[FaultServer], ttl: float,
) -> tuple[FaultServer, Path, Path, str]:
    """A started server with no local agents, and where this test's agent keeps its state,
    where its job notes each start, and the marker in the job's arguments."""
    server = FaultServer(tmp_path, database_url, workers=0, heartbeat_ttl=ttl)
    servers.append(server)
    server.start()
    return server, tmp_path / "state", tmp_path / "starts", secrets.token_hex(8)


def test_agent_killed_and_restarted_within_the_ttl_reattaches(
    tmp_path: Path, database_url: str, servers: list[FaultServer], record_figure: Recorder,
) -> None:
    server, state_dir, starts, marker = reattach_server(tmp_path, database_url, servers, 10.0)
    agent = start_agent(database_url, server.address, tmp_path, "reattach", state_dir=state_dir)
    try:
        server.wait_workers(1, 30)
        with server.channel() as channel:
            job_id = submit(channel, command=job_command(numbered_lines(starts, LINES, 0.02),
                                                         marker), max_attempts=3)
            wait_for(lambda: stored_lines(database_url, job_id) >= 50, 30,
                     "the first lines to be stored")
            worker_before = get_job(channel, job_id).worker_id
            kill9(agent)
            killed_at = time.monotonic()
            lines_at_kill = stored_lines(database_url, job_id)
            assert processes_with_arg(marker), "the job should outlive its agent"
            agent = start_agent(database_url, server.address, tmp_path, "reattach",
                                state_dir=state_dir)
            wait_for(lambda: stored_lines(database_url, job_id) > lines_at_kill, 30,
                     "output to flow again")
            reattach_seconds = time.monotonic() - killed_at
            wait_for(lambda: state_of(channel, job_id) in FINAL, 60, "the job to finish")
            job = get_job(channel, job_id)
        logs = hodeictl_logs(server, job_id)
    finally:
        stop(agent, marker)
    expected = [f"line-{i}".encode() for i in range(1, LINES + 1)]
    lost, duplicated = line_faults(expected, logs.stdout)
    process_starts = starts.read_text().split()
    record_figure("duplicate starts", len(process_starts) - 1)
    record_figure("lines lost", lost)
    record_figure("duplicate lines", duplicated)
    record_figure("attempts", len(job.attempts))
    record_figure("kill to output flowing again (s)", round(reattach_seconds, 2))
    detail = server.log_text()[-4000:] + (tmp_path / "reattach.log").read_text()[-4000:]
    assert state_name(job) == "SUCCEEDED", detail
    assert process_starts == ["1"]
    assert len(job.attempts) == 1
    assert job.worker_id == worker_before  # the same worker, not a new registration
    assert logs.stdout == b"".join(line + b"\n" for line in expected)
    assert (lost, duplicated) == (0, 0)
    assert not any(state_dir.joinpath("jobs").iterdir()), "the job's files should be removed"


def test_job_ending_while_its_agent_is_down_reports_its_exit_code(
    tmp_path: Path, database_url: str, servers: list[FaultServer], record_figure: Recorder,
) -> None:
    server, state_dir, starts, marker = reattach_server(tmp_path, database_url, servers, 10.0)
    agent = start_agent(database_url, server.address, tmp_path, "early", state_dir=state_dir)
    lines = 40
    try:
        server.wait_workers(1, 30)
        with server.channel() as channel:
            job_id = submit(channel, command=job_command(
                numbered_lines(starts, lines, 0.02, exit_code=7), marker))
            wait_for(lambda: stored_lines(database_url, job_id) >= 5, 30, "the first lines")
            kill9(agent)
            wait_for(lambda: not processes_with_arg(marker), 30, "the job to end on its own")
            assert state_of(channel, job_id) == "RUNNING"
            agent = start_agent(database_url, server.address, tmp_path, "early",
                                state_dir=state_dir)
            wait_for(lambda: state_of(channel, job_id) in FINAL, 30, "the job's result")
            job = get_job(channel, job_id)
        logs = hodeictl_logs(server, job_id)
    finally:
        stop(agent, marker)
    record_figure("exit code reported", job.exit_code)
    expected = [f"line-{i}".encode() for i in range(1, lines + 1)]
    assert state_name(job) == "FAILED", server.log_text()[-3000:]
    assert job.exit_code == 7
    assert len(job.attempts) == 1
    assert line_faults(expected, logs.stdout) == (0, 0)
    assert logs.stdout == b"".join(line + b"\n" for line in expected)


def test_agent_restarted_after_the_ttl_finds_its_job_stopped_and_retried(
    tmp_path: Path, database_url: str, servers: list[FaultServer], record_figure: Recorder,
) -> None:
    ttl = 3.0
    server, state_dir, starts, marker = reattach_server(tmp_path, database_url, servers, ttl)
    first = start_agent(database_url, server.address, tmp_path, "first", state_dir=state_dir)
    second: subprocess.Popen[bytes] | None = None
    alive_at_once = 0
    watching = threading.Event()

    def watch_attempts() -> None:
        nonlocal alive_at_once
        while not watching.is_set():
            attempts = set()
            for pid in processes_with_arg(marker):
                with contextlib.suppress(OSError):
                    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                    attempts |= {v for v in environ if v.startswith(b"HODEI_JOB_ATTEMPT=")}
            alive_at_once = max(alive_at_once, len(attempts))
            time.sleep(0.01)

    watcher = threading.Thread(target=watch_attempts, daemon=True)
    watcher.start()
    try:
        server.wait_workers(1, 30)
        # The new leader's start-up grace (one TTL) must be over before leases expire.
        time.sleep(ttl)
        with server.channel() as channel:
            job_id = submit(channel, command=job_command(numbered_lines(starts, 150, 0.05),
                                                         marker), max_attempts=2)
            wait_for(lambda: stored_lines(database_url, job_id) >= 5, 30, "the first lines")
            second = start_agent(database_url, server.address, tmp_path, "second")
            server.wait_workers(2, 30)
            kill9(first)
            stopped_after = wait_for(lambda: not processes_with_arg(marker) or
                                     len(starts.read_text().split()) > 1, 4 * ttl,
                                     "the watchdog to stop the orphaned job")
            wait_for(lambda: len(get_job(channel, job_id).attempts) == 2, 4 * ttl + 10,
                     "the retry")
            first = start_agent(database_url, server.address, tmp_path, "first",
                                state_dir=state_dir)
            wait_for(lambda: state_of(channel, job_id) in FINAL, 60, "the retry to finish")
            time.sleep(1.0)  # the restarted agent reports the old attempt meanwhile
            job = get_job(channel, job_id)
            # The restarted agent is the same worker, and takes new work.
            stop(second, marker)
            next_id = submit(channel, command=["true"])
            wait_for(lambda: state_of(channel, next_id) in FINAL, 30,
                     "a job on the restarted agent")
            next_job = get_job(channel, next_id)
            [restarted] = [w for w in server.list_workers() if w.name == "first"]
    finally:
        watching.set()
        watcher.join()
        stop(first, marker)
        if second is not None:
            stop(second, marker)
    record_figure("old processes stopped after the kill (s)", round(stopped_after, 2))
    record_figure("max attempts alive at once", alive_at_once)
    record_figure("attempts", len(job.attempts))
    assert state_name(job) == "SUCCEEDED", server.log_text()[-4000:]
    assert [a.attempt for a in job.attempts] == [1, 2]
    assert starts.read_text().split() == ["1", "2"]
    assert alive_at_once == 1
    assert state_name(next_job) == "SUCCEEDED"
    assert next_job.worker_id == restarted.id == job.attempts[0].worker_id
    assert stopped_after < ttl


def test_local_provider_restarts_a_killed_agent_as_the_same_worker(
    tmp_path: Path, database_url: str, servers: list[FaultServer], record_figure: Recorder,
) -> None:
    server = FaultServer(tmp_path, database_url, workers=1, heartbeat_ttl=10.0)
    servers.append(server)
    server.start()
    starts, marker = tmp_path / "starts", secrets.token_hex(8)
    lines = 200
    time.sleep(MIN_UPTIME_FOR_RESTART)  # a younger agent dying is taken for a crash loop
    with server.channel() as channel:
        job_id = submit(channel, command=job_command(numbered_lines(starts, lines, 0.02),
                                                     marker))
        wait_for(lambda: stored_lines(database_url, job_id) >= 30, 30, "the first lines")
        worker_before = get_job(channel, job_id).worker_id
        [agent] = server.agent_pids()
        os.kill(agent, signal.SIGKILL)
        killed_at = time.monotonic()
        wait_for(lambda: server.agent_pids() not in ([], [agent]), 10, "the agent's restart")
        lines_at_restart = stored_lines(database_url, job_id)
        wait_for(lambda: stored_lines(database_url, job_id) > lines_at_restart, 30,
                 "output to flow again")
        reattach_seconds = time.monotonic() - killed_at
        wait_for(lambda: state_of(channel, job_id) in FINAL, 60, "the job to finish")
        job = get_job(channel, job_id)
    logs = hodeictl_logs(server, job_id)
    expected = [f"line-{i}".encode() for i in range(1, lines + 1)]
    record_figure("kill to output flowing again (s)", round(reattach_seconds, 2))
    assert state_name(job) == "SUCCEEDED", server.log_text()[-4000:]
    assert starts.read_text().split() == ["1"]
    assert len(job.attempts) == 1
    assert job.worker_id == worker_before
    assert logs.stdout == b"".join(line + b"\n" for line in expected)
