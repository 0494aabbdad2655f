"""The state dir: identity, the chunk journal, and re-attaching to a job another agent process
started (simulated here by starting the job through a keeper, as the runner does, and letting
go of the keeper at once, as a dying agent would)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from hodei_agent import watchdog
from hodei_agent.errors import AgentError
from hodei_agent.keeperclient import KeeperClient
from hodei_agent.outbox import Outbox
from hodei_agent.procgroup import group_exists
from hodei_agent.runner import SECRETS_NOT_REATTACHED_REASON, UNKNOWN_END_REASON
from hodei_agent.statedir import Identity, JobFiles, JobMeta, StateDir, process_start_ticks
from hodei_agent.supervisor import JobSupervisor
from hodei_api.v1 import agent_pb2, jobs_pb2, logs_pb2
from tests.cgroupsupport import skip_without_job_cgroups
from tests.unit.agent.conftest import OutboxReader

STDOUT = logs_pb2.LOG_STREAM_STDOUT
STDERR = logs_pb2.LOG_STREAM_STDERR


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_identity_is_kept_private_and_the_dir_is_locked(tmp_path: Path) -> None:
    state = StateDir.open(tmp_path / "state")
    try:
        assert state.load_identity() is None
        identity = Identity("worker-1", "secret", 1.0, 20.0)
        state.save_identity(identity)
        assert state.load_identity() == identity
        assert mode(tmp_path / "state") == 0o700
        assert mode(tmp_path / "state" / "identity.json") == 0o600
        with pytest.raises(AgentError, match="another agent"):
            StateDir.open(tmp_path / "state")
        state.forget_identity()
        assert state.load_identity() is None
    finally:
        state.close()
    StateDir.open(tmp_path / "state").close()  # free again once closed


def test_a_temporary_state_dir_keeps_no_identity_and_goes_away() -> None:
    state = StateDir.open(None)
    state.save_identity(Identity("worker-1", "secret", 1.0, 20.0))
    assert state.load_identity() is None
    state.close()
    assert not state.path.exists()


def test_journal_gives_offsets_seqs_and_ignores_a_torn_record(tmp_path: Path) -> None:
    state = StateDir.open(tmp_path / "state")
    files = state.new_job("job-1", 3)
    journal = files.open_journal()
    journal.chunk(1, STDOUT, 10)
    journal.chunk(2, STDERR, 4)
    journal.chunk(3, STDOUT, 7)
    journal.acked(2)
    journal.close()
    with open(files.prefix + ".chunks", "ab") as raw:
        raw.write(b"\x04\x00\x00")  # a record cut short by a kill: never sent
    read = files.read_journal()
    assert [(e.seq, e.stream, e.offset, e.length) for e in read.entries] == [
        (1, STDOUT, 0, 10), (2, STDERR, 0, 4), (3, STDOUT, 10, 7),
    ]
    assert (read.acked_seq, read.last_seq) == (2, 3)
    assert read.offsets == {STDOUT: 17, STDERR: 4}
    files.remove()
    assert list(state.jobs.iterdir()) == []
    state.close()


def start_like_a_previous_agent(files: JobFiles, script: str, timeout: float = 0.0,
                                job_id: str = "job-1", recorded: bool = True) -> int:
    """Start `script` as the supervisor and the runner do (meta before the start, output
    files, a keeper, meta with the pid) and let go of the keeper, as a dying agent would:
    it stays, the job's parent, to record its end. With `recorded` False the agent dies
    before it records the job's pid."""

    async def start() -> int:
        files.write_meta(JobMeta(job_id, 1, 0, 0, time.time(), timeout, ""))
        keeper = KeeperClient()
        try:
            stdout, stderr = files.create_outputs()
            try:
                kept = await keeper.spawn(["sh", "-c", script], dict(os.environ), os.getcwd(),
                                          (keeper.devnull, stdout, stderr),
                                          str(files.status_path))
                cgroup = await kept.cgroup
            finally:
                os.close(stdout)
                os.close(stderr)
        finally:
            keeper.close()
        assert kept.start_ticks is not None
        if recorded:
            files.write_meta(JobMeta(job_id, 1, kept.pid, kept.start_ticks, time.time(),
                                     timeout, "", cgroup=cgroup))
        return kept.pid

    return asyncio.run(start())


def wait_group_gone(pgid: int) -> None:
    deadline = time.monotonic() + 5
    while group_exists(pgid):
        assert time.monotonic() < deadline, "the job's group should be gone"
        time.sleep(0.01)


async def follow_adopted(state: StateDir, while_running: float = 0.0,
                         cancel: bool = False) -> OutboxReader:
    outbox = Outbox()
    keeper = KeeperClient()  # for new jobs: there is none here
    supervisor = JobSupervisor(outbox, state, slots=1, worker_id="worker-1", keeper=keeper)
    try:
        assert supervisor.adopt() == [("job-1", 1)]
        reader = OutboxReader(outbox)
        consumer = asyncio.create_task(reader.run())
        if cancel:
            await asyncio.sleep(while_running)
            supervisor.cancel_job(agent_pb2.CancelJobCommand(job_id="job-1", attempt=1,
                                                             grace_seconds=1.0))
        async with asyncio.timeout(20):
            await consumer
            await supervisor.wait_idle()
    finally:
        keeper.close()
    return reader


def chunks_of(reader: OutboxReader) -> list[logs_pb2.LogChunk]:
    return [m.log_chunk for m in reader.messages if m.WhichOneof("msg") == "log_chunk"]


def finished_of(reader: OutboxReader) -> agent_pb2.JobFinished:
    [done] = [m.job_finished for m in reader.messages if m.WhichOneof("msg") == "job_finished"]
    return done


def test_adopted_job_resends_unacked_chunks_then_goes_on_with_the_next_seq(
    tmp_path: Path,
) -> None:
    state = StateDir.open(tmp_path / "state")
    files = state.new_job("job-1", 1)
    go = tmp_path / "go"
    start_like_a_previous_agent(
        files, f"echo one; echo err >&2; while [ ! -e {go} ]; do sleep 0.01; done; "
        "echo two; exit 5")
    deadline = time.monotonic() + 10
    while files.output_path(STDOUT).read_bytes() != b"one\n":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    # The previous agent made chunk 1 of stdout's first line, sent it, and died unacked.
    journal = files.open_journal()
    journal.chunk(1, STDOUT, 4)
    journal.close()
    go.touch()
    reader = asyncio.run(follow_adopted(state))
    chunks = chunks_of(reader)
    assert [c.seq for c in chunks] == list(range(1, len(chunks) + 1))
    assert chunks[0].data == b"one\n"
    assert b"".join(c.data for c in chunks if c.stream == STDOUT) == b"one\ntwo\n"
    assert b"".join(c.data for c in chunks if c.stream == STDERR) == b"err\n"
    assert reader.messages[0].WhichOneof("msg") == "job_accepted"
    done = finished_of(reader)
    assert (done.outcome, done.has_exit_code, done.exit_code) == (jobs_pb2.JOB_STATE_FAILED,
                                                                   True, 5)
    assert done.last_seq == len(chunks)
    state.close()


def test_a_job_whose_agent_died_before_recording_its_pid_is_reattached(
    tmp_path: Path,
) -> None:
    """Found by its output file: not handed back (the server would run it again at once
    while it still runs), but followed to its end like any other."""
    state = StateDir.open(tmp_path / "state")
    files = state.new_job("job-1", 1)
    go = tmp_path / "go"
    pid = start_like_a_previous_agent(
        files, f"echo one; while [ ! -e {go} ]; do sleep 0.01; done; echo two; exit 3",
        recorded=False)
    go.touch()
    reader = asyncio.run(follow_adopted(state))
    assert b"".join(c.data for c in chunks_of(reader)) == b"one\ntwo\n"
    done = finished_of(reader)
    assert (done.outcome, done.exit_code) == (jobs_pb2.JOB_STATE_FAILED, 3)
    wait_group_gone(pid)
    state.close()


def test_a_job_that_ended_before_its_pid_was_recorded_reports_its_end(
    tmp_path: Path,
) -> None:
    state = StateDir.open(tmp_path / "state")
    files = state.new_job("job-1", 1)
    start_like_a_previous_agent(files, "echo done; exit 4", recorded=False)
    deadline = time.monotonic() + 10
    while files.read_status() is None:
        assert time.monotonic() < deadline, "the keeper should record the job's end"
        time.sleep(0.01)
    reader = asyncio.run(follow_adopted(state))
    assert b"".join(c.data for c in chunks_of(reader)) == b"done\n"
    done = finished_of(reader)
    assert (done.outcome, done.exit_code) == (jobs_pb2.JOB_STATE_FAILED, 4)
    state.close()


def test_a_job_recorded_but_never_started_is_forgotten(tmp_path: Path) -> None:
    state = StateDir.open(tmp_path / "state")
    files = state.new_job("job-1", 1)
    files.write_meta(JobMeta("job-1", 1, 0, 0, time.time(), 0.0, ""))
    keeper = KeeperClient()  # for new jobs: there is none here
    supervisor = JobSupervisor(Outbox(), state, slots=1, worker_id="worker-1", keeper=keeper)
    assert supervisor.adopt() == []
    assert list(state.jobs.iterdir()) == []
    keeper.close()
    state.close()


def test_cancelling_an_adopted_job_kills_its_whole_group(tmp_path: Path) -> None:
    state = StateDir.open(tmp_path / "state")
    files = state.new_job("job-1", 1)
    pid = start_like_a_previous_agent(files, "sleep 60 & echo started; sleep 60")
    reader = asyncio.run(follow_adopted(state, while_running=0.3, cancel=True))
    done = finished_of(reader)
    assert done.outcome == jobs_pb2.JOB_STATE_CANCELLED
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)
    state.close()


def daemon_of(path: Path) -> int:
    """The pid a job's daemon wrote to `path` (once it did)."""
    deadline = time.monotonic() + 10
    while not path.exists() or not path.read_text().strip():
        assert time.monotonic() < deadline, "the job's daemon should start"
        time.sleep(0.01)
    return int(path.read_text())


def wait_vanished(pid: int) -> None:
    """Wait until `pid` is dead and reaped (no zombie left)."""
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{pid}"):
        assert time.monotonic() < deadline, f"{pid} should be dead and reaped"
        time.sleep(0.01)


def daemonising(pid_file: Path, then: str = "sleep 60") -> str:
    """A job that starts a daemon (in a session of its own) writing its pid to `pid_file`."""
    return f"setsid -f sh -c 'echo $$ > {pid_file}; exec sleep 60'; {then}"


def test_cancelling_an_adopted_job_kills_what_left_its_group(tmp_path: Path) -> None:
    skip_without_job_cgroups()
    state = StateDir.open(tmp_path / "state")
    files = state.new_job("job-1", 1)
    start_like_a_previous_agent(files, daemonising(tmp_path / "daemon"))
    daemon = daemon_of(tmp_path / "daemon")
    meta = files.read_meta()
    assert meta is not None and meta.cgroup
    reader = asyncio.run(follow_adopted(state, while_running=0.3, cancel=True))
    assert finished_of(reader).outcome == jobs_pb2.JOB_STATE_CANCELLED
    wait_vanished(daemon)
    assert not os.path.exists(meta.cgroup)
    state.close()


def test_an_adopted_job_that_ended_while_no_agent_was_there_leaves_nothing(
    tmp_path: Path,
) -> None:
    skip_without_job_cgroups()
    state = StateDir.open(tmp_path / "state")
    files = state.new_job("job-1", 1)
    start_like_a_previous_agent(files, daemonising(tmp_path / "daemon", then="exit 4"))
    daemon = daemon_of(tmp_path / "daemon")
    os.kill(daemon, 0)  # the main process ended; with no agent there, its daemon runs on
    reader = asyncio.run(follow_adopted(state))
    done = finished_of(reader)
    assert (done.outcome, done.exit_code) == (jobs_pb2.JOB_STATE_FAILED, 4)
    wait_vanished(daemon)
    state.close()


def test_an_adopted_job_that_was_given_secrets_is_stopped_not_reattached(
    tmp_path: Path,
) -> None:
    """This process does not know the secrets, so it could not redact the job's output: it
    kills the group, removes the secrets directory and reports the attempt LOST, sending
    nothing of what the job printed (the files hold it unredacted)."""
    state = StateDir.open(tmp_path / "state")
    files = state.new_job("job-1", 1)
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir(mode=0o700)
    (secrets_dir / "DB_PASSWORD").write_text("s3cr3t-Value")
    pid = start_like_a_previous_agent(files, "echo s3cr3t-Value; sleep 60 & sleep 60")
    meta = files.read_meta()
    assert meta is not None
    files.write_meta(dataclasses.replace(meta, has_secrets=True, secrets_dir=str(secrets_dir)))
    reader = asyncio.run(follow_adopted(state))
    done = finished_of(reader)
    assert done.outcome == jobs_pb2.JOB_STATE_LOST
    assert done.reason == SECRETS_NOT_REATTACHED_REASON
    assert chunks_of(reader) == []
    assert not secrets_dir.exists()
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)
    state.close()


def test_a_reused_pid_is_not_taken_for_the_job(tmp_path: Path) -> None:
    state = StateDir.open(tmp_path / "state")
    files = state.new_job("job-1", 1)
    files.create_outputs()
    # The recorded pid now names another process, leader of its own group: leave it alone.
    other = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        ticks = process_start_ticks(other.pid)
        assert ticks is not None
        files.write_meta(JobMeta("job-1", 1, other.pid, ticks + 1, time.time(), 0.0, ""))
        reader = asyncio.run(follow_adopted(state))
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()
    done = finished_of(reader)
    assert done.outcome == jobs_pb2.JOB_STATE_LOST
    assert not done.has_exit_code
    assert done.reason == UNKNOWN_END_REASON
    state.close()


def run_watchdog(state: StateDir) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "hodei_agent.watchdog", str(state.path)],
                          capture_output=True, timeout=20)


def test_watchdog_stops_a_dead_agents_jobs_once_the_lease_ran_out(tmp_path: Path) -> None:
    state = StateDir.open(tmp_path / "state")
    files = state.new_job("job-1", 1)
    pid = start_like_a_previous_agent(files, "sleep 60 & sleep 60")
    state.renew_lease(time.time() + 0.5)
    assert not watchdog.running(state.path)
    started = time.monotonic()
    result = run_watchdog(state)
    assert result.returncode == 0, result.stderr
    assert 0.5 <= time.monotonic() - started < 5
    assert files.fenced_path.exists()
    wait_group_gone(pid)  # its keeper reaps the job and what the job left (subreaper)
    assert files.read_status() == 128 + signal.SIGTERM  # recorded by the keeper
    state.close()


def test_watchdog_stops_a_job_whose_pid_was_never_recorded(tmp_path: Path) -> None:
    state = StateDir.open(tmp_path / "state")
    files = state.new_job("job-1", 1)
    pid = start_like_a_previous_agent(files, "sleep 60", recorded=False)
    state.renew_lease(time.time() + 0.2)
    result = run_watchdog(state)
    assert result.returncode == 0, result.stderr
    assert files.fenced_path.exists()
    wait_group_gone(pid)
    state.close()


def test_watchdog_kills_whole_cgroups_of_running_and_ended_jobs(tmp_path: Path) -> None:
    skip_without_job_cgroups()
    state = StateDir.open(tmp_path / "state")
    running = state.new_job("job-1", 1)
    start_like_a_previous_agent(running, daemonising(tmp_path / "d1"))
    ended = state.new_job("job-2", 1)
    start_like_a_previous_agent(ended, daemonising(tmp_path / "d2", then="true"),
                                job_id="job-2")
    daemons = [daemon_of(tmp_path / "d1"), daemon_of(tmp_path / "d2")]
    cgroups = [meta.cgroup for meta in (running.read_meta(), ended.read_meta()) if meta]
    state.renew_lease(time.time() + 0.3)
    result = run_watchdog(state)
    assert result.returncode == 0, result.stderr
    assert b"stopped 1 job(s)" in result.stderr
    for daemon in daemons:
        wait_vanished(daemon)
    assert running.fenced_path.exists() and not ended.fenced_path.exists()
    assert len(cgroups) == 2 and not any(os.path.exists(cgroup) for cgroup in cgroups)
    state.close()


def test_watchdog_leaves_when_the_agent_drained(tmp_path: Path) -> None:
    state = StateDir.open(tmp_path / "state")
    files = state.new_job("job-1", 1)
    pid = start_like_a_previous_agent(files, "sleep 60")
    try:
        assert run_watchdog(state).returncode == 0  # no lease file: nothing to guard
        os.killpg(pid, 0)
        assert not files.fenced_path.exists()
    finally:
        os.killpg(pid, signal.SIGKILL)
        wait_group_gone(pid)
        state.close()


def test_the_files_of_a_job_that_ended_whole_and_silent_serve_the_next_one(
    tmp_path: Path,
) -> None:
    """A job that printed nothing and left no process (its cgroup is gone) hands its files
    to the next job instead of removing them; in between they name no job to a restarted
    agent or the lease watchdog, and the agent removes them when it exits."""
    skip_without_job_cgroups()
    state = StateDir.open(tmp_path / "state")
    prefixes: list[set[str]] = []
    temp_dirs: list[str] = []

    async def scenario() -> None:
        keeper = KeeperClient()
        supervisor = JobSupervisor(Outbox(), state, slots=1, worker_id="worker-1",
                                   keeper=keeper)
        try:
            for n, command in enumerate([["true"], ["false"], ["echo", "out"], ["true"]]):
                key = (f"job-{n}", 1)
                supervisor.run_job(agent_pb2.RunJob(
                    job_id=key[0], attempt=1, spec=jobs_pb2.JobSpec(command=command)))
                async with asyncio.timeout(20):
                    await supervisor.wait_idle()
                prefixes.append({str(p).rsplit(".", 1)[0] for p in state.jobs.iterdir()})
                supervisor.release(key)
                spare = json.loads((state.jobs / "job-0.1.meta").read_bytes()) if n < 2 else {}
                temp_dirs.append(spare.get("temp_dir", ""))
                if n == 0:
                    [free] = state.existing_jobs()
                    assert free.read_meta() is None  # names no job: only the temp dir kept
                    assert os.listdir(temp_dirs[0]) == []
                    assert watchdog.live_jobs(state.path) == []
                    assert sorted(p.name for p in state.jobs.iterdir()) == [
                        "job-0.1.meta", "job-0.1.stderr", "job-0.1.stdout"]
            assert len(list(state.jobs.iterdir())) == 3  # the last job's, recycled
        finally:
            supervisor.close()
            keeper.close()

    asyncio.run(scenario())
    # job-1 ran in job-0's files and temp dir; job-2 too, but printed: its files were
    # removed after it.
    assert prefixes[0] == prefixes[1] == prefixes[2] == {str(state.jobs / "job-0.1")}
    assert prefixes[3] == {str(state.jobs / "job-3.1")}
    assert temp_dirs[0] == temp_dirs[1] != ""
    assert list(state.jobs.iterdir()) == []  # removed when the agent exits
    assert not os.path.exists(temp_dirs[0])
    state.close()


def test_a_restarted_agent_removes_the_recycled_files_and_temp_dir_it_finds(
    tmp_path: Path,
) -> None:
    state = StateDir.open(tmp_path / "state")
    files = state.new_job("job-1", 1)
    temp_dir = tempfile.mkdtemp(prefix="hodei-job-1-1-")
    files.write_meta({"temp_dir": temp_dir})  # as a killed agent left recycled files
    files.create_outputs()
    keeper = KeeperClient()
    supervisor = JobSupervisor(Outbox(), state, slots=1, worker_id="worker-1", keeper=keeper)
    assert supervisor.adopt() == []
    assert list(state.jobs.iterdir()) == []
    assert not os.path.exists(temp_dir)
    keeper.close()
    state.close()


def test_a_temp_dir_is_kept_for_the_next_job_only_if_empty_private_and_ours(
    tmp_path: Path,
) -> None:
    """A job may have opened its temp dir to others, replaced it, or left files in it: then
    it is removed as before, never handed to the next job."""
    state = StateDir.open(tmp_path / "state")
    files = state.new_job("job-1", 1)
    files.reusable = True
    private = tempfile.mkdtemp(prefix="hodei-job-1-1-", dir=tmp_path)
    opened = tempfile.mkdtemp(prefix="hodei-job-1-1-", dir=tmp_path)
    os.chmod(opened, 0o777)
    left = tempfile.mkdtemp(prefix="hodei-job-1-1-", dir=tmp_path)
    Path(left, "file").touch()
    link = tmp_path / "hodei-link"
    link.symlink_to(private)
    assert not files.keep_temp_dir(opened)
    assert not files.keep_temp_dir(left)
    assert not files.keep_temp_dir(str(link))
    assert not files.keep_temp_dir(str(tmp_path / "gone"))
    files.reusable = False  # the job left a process: nothing of it is kept
    assert not files.keep_temp_dir(private)
    files.reusable = True
    assert files.keep_temp_dir(private)
    assert files.take_temp_dir() == private and files.take_temp_dir() == ""
    state.close()
