"""Real jobs through the runner, the batcher and the outbox."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from hodei_agent.outbox import MAX_UNACKED_BYTES
from hodei_api.v1 import jobs_pb2, logs_pb2
from tests.cgroupsupport import skip_without_job_cgroups

STDOUT = logs_pb2.LOG_STREAM_STDOUT
STDERR = logs_pb2.LOG_STREAM_STDERR
SUCCEEDED = jobs_pb2.JOB_STATE_SUCCEEDED
FAILED = jobs_pb2.JOB_STATE_FAILED


def command(*argv: str, **fields: Any) -> jobs_pb2.JobSpec:
    return jobs_pb2.JobSpec(command=list(argv), **fields)


def script(text: str, **fields: Any) -> jobs_pb2.JobSpec:
    return jobs_pb2.JobSpec(script=text, **fields)


def assert_group_gone(pgid: int) -> None:
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)


def assert_well_formed(run: Any) -> None:
    """Accepted first, seq 1..n without gaps, one stream per chunk, none over 64 KiB."""
    kinds = [m.WhichOneof("msg") for m in run.messages]
    if run.pid is not None:
        assert kinds[0] == "job_accepted"
        assert run.messages[0].job_accepted.pid == run.pid
    assert [c.seq for c in run.chunks] == list(range(1, len(run.chunks) + 1))
    assert all(c.stream in (STDOUT, STDERR) for c in run.chunks)
    assert all(0 < len(c.data) <= 64 * 1024 for c in run.chunks)
    assert run.finished().last_seq == len(run.chunks)


@pytest.mark.parametrize(
    ("spec", "outcome", "exit_code", "reason"),
    [
        (command("true"), SUCCEEDED, 0, ""),
        (command("sh", "-c", "exit 3"), FAILED, 3, ""),
        (command("sh", "-c", "kill -KILL $$"), FAILED, 128 + signal.SIGKILL, "killed by SIGKILL"),
        (command("sh", "-c", "kill -TERM $$"), FAILED, 128 + signal.SIGTERM, "killed by SIGTERM"),
    ],
)
def test_exit_codes_propagate(
    job_runner: Any, spec: jobs_pb2.JobSpec, outcome: int, exit_code: int, reason: str
) -> None:
    run, _ = asyncio.run(job_runner(spec))
    assert (run.result.outcome, run.result.exit_code, run.result.reason) == (
        outcome,
        exit_code,
        reason,
    )
    finished = run.finished()
    assert finished.has_exit_code and finished.exit_code == exit_code
    assert finished.outcome == outcome
    assert_well_formed(run)


@pytest.mark.parametrize("cgroups", [True, False], ids=["cgroup", "process-group"])
def test_exit_status_and_timeout_with_and_without_cgroups(
    job_runner: Any, cgroups: bool
) -> None:
    run, _ = asyncio.run(job_runner(command("sh", "-c", "echo hi; exit 3"), cgroups=cgroups))
    assert (run.result.outcome, run.result.exit_code, run.output()) == (FAILED, 3, b"hi\n")
    run, _ = asyncio.run(job_runner(command("sh", "-c", "kill -KILL $$"), cgroups=cgroups))
    assert (run.result.exit_code, run.result.reason) == (128 + 9, "killed by SIGKILL")
    started = time.monotonic()
    run, _ = asyncio.run(job_runner(script("sleep 60 & sleep 60", timeout_seconds=0.3),
                                    cgroups=cgroups))
    assert run.result.outcome == jobs_pb2.JOB_STATE_TIMED_OUT
    assert time.monotonic() - started < 5
    assert_group_gone(run.pid)


def test_stdout_and_stderr_stay_separate(job_runner: Any) -> None:
    run, _ = asyncio.run(
        job_runner(command("sh", "-c", "printf 'out 1\\n'; printf 'err 1\\n' >&2; printf 'out 2'"))
    )
    assert run.output(STDOUT) == b"out 1\nout 2"
    assert run.output(STDERR) == b"err 1\n"
    assert_well_formed(run)


def test_200k_lines_reassemble_byte_exact(job_runner: Any) -> None:
    run, _ = asyncio.run(job_runner(command("seq", "1", "200000")))
    expected = b"".join(b"%d\n" % n for n in range(1, 200001))
    assert run.output(STDOUT) == expected
    assert_well_formed(run)
    # Batched, not one message per line.
    assert len(run.chunks) < 200
    assert run.result.outcome == SUCCEEDED


def test_both_streams_at_volume_and_raw_bytes(job_runner: Any) -> None:
    program = (
        "import os\n"
        "for i in range(3000):\n"
        "    os.write(1, b'o%d\\r\\n' % i + bytes(range(256)))\n"
        "    os.write(2, b'e%d\\xff\\xfe\\n' % i)\n"
    )
    run, _ = asyncio.run(job_runner(command(sys.executable, "-c", program)))
    assert run.output(STDOUT) == b"".join(b"o%d\r\n" % i + bytes(range(256)) for i in range(3000))
    assert run.output(STDERR) == b"".join(b"e%d\xff\xfe\n" % i for i in range(3000))
    assert_well_formed(run)


def test_timeout_kills_the_whole_group(job_runner: Any) -> None:
    started = time.monotonic()
    run, _ = asyncio.run(
        job_runner(script("echo before; sleep 60 & sleep 60; echo after", timeout_seconds=0.5))
    )
    assert time.monotonic() - started < 5
    assert run.result.outcome == jobs_pb2.JOB_STATE_TIMED_OUT
    assert run.result.reason == "timed out after 0.5s"
    assert run.output() == b"before\n"
    assert run.finished().outcome == jobs_pb2.JOB_STATE_TIMED_OUT
    assert run.pid is not None
    assert_group_gone(run.pid)


def test_cancel_ends_the_job_within_grace(job_runner: Any) -> None:
    async def cancel_soon(runner: Any, reader: Any, pid: int) -> None:
        await asyncio.sleep(0.2)
        runner.cancel("cancelled by user", 3.0)

    started = time.monotonic()
    run, _ = asyncio.run(job_runner(command("sleep", "60"), while_running=cancel_soon))
    assert time.monotonic() - started < 3
    assert run.result.outcome == jobs_pb2.JOB_STATE_CANCELLED
    assert run.result.reason == "cancelled by user"
    assert run.result.exit_code == 128 + signal.SIGTERM
    assert_group_gone(run.pid)


def test_cancel_kills_what_ignores_sigterm_after_grace(job_runner: Any) -> None:
    async def cancel_soon(runner: Any, reader: Any, pid: int) -> None:
        await asyncio.sleep(0.3)
        runner.cancel("", 0.5)

    started = time.monotonic()
    run, _ = asyncio.run(
        job_runner(
            script("trap '' TERM; echo ready; sleep 60 & sleep 60"), while_running=cancel_soon
        )
    )
    elapsed = time.monotonic() - started
    assert 0.7 < elapsed < 4
    assert run.result.outcome == jobs_pb2.JOB_STATE_CANCELLED
    assert run.result.reason == "cancelled"
    assert run.result.exit_code == 128 + signal.SIGKILL
    assert_group_gone(run.pid)


def test_background_leftovers_die_with_the_job(job_runner: Any) -> None:
    started = time.monotonic()
    run, _ = asyncio.run(job_runner(script("sleep 60 & echo started")))
    assert time.monotonic() - started < 5
    assert run.result.outcome == SUCCEEDED
    assert run.output() == b"started\n"
    assert_group_gone(run.pid)


ESCAPING = script("setsid -f sh -c 'echo $$; exec sleep 30'; sleep 0.2; echo done")


def wait_vanished(pid: int) -> None:
    """Wait until `pid` is gone from /proc: dead and reaped (by the keeper: its subreaper)."""
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{pid}"):
        assert time.monotonic() < deadline, f"{pid} should be gone, not a zombie"
        time.sleep(0.01)


def test_a_process_leaving_the_group_dies_with_the_job(job_runner: Any) -> None:
    skip_without_job_cgroups()
    if shutil.which("setsid") is None:
        pytest.skip("needs setsid")
    started = time.monotonic()
    run, _ = asyncio.run(job_runner(ESCAPING))
    escaped, done = run.output().split()
    assert done == b"done"
    assert run.result.outcome == SUCCEEDED
    assert time.monotonic() - started < 5
    wait_vanished(int(escaped))


def test_without_cgroups_a_process_leaving_the_group_outlives_the_job_and_is_reaped(
    job_runner: Any,
) -> None:
    if shutil.which("setsid") is None:
        pytest.skip("needs setsid")
    started = time.monotonic()
    run, _ = asyncio.run(job_runner(ESCAPING, cgroups=False))
    escaped, done = run.output().split()
    assert (done, run.result.outcome) == (b"done", SUCCEEDED)
    assert time.monotonic() - started < 5  # the job does not wait for it
    os.kill(int(escaped), 0)  # what process groups can't contain
    os.kill(int(escaped), signal.SIGKILL)
    wait_vanished(int(escaped))


def test_script_stops_at_first_failing_command(job_runner: Any) -> None:
    run, _ = asyncio.run(job_runner(script("echo one\nfalse\necho two\n")))
    assert run.result.outcome == FAILED
    assert run.result.exit_code == 1
    assert run.output() == b"one\n"


def test_script_rejects_unset_variables(job_runner: Any) -> None:
    run, _ = asyncio.run(job_runner(script('echo "$HODEI_TEST_UNSET_VARIABLE"\necho after\n')))
    assert run.result.outcome == FAILED
    assert b"after" not in run.output()


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_script_has_pipefail(job_runner: Any) -> None:
    run, _ = asyncio.run(job_runner(script("false | true\necho reached\n", interpreter="bash")))
    assert run.result.outcome == FAILED
    assert run.output() == b""


def test_sh_script_runs_whether_or_not_the_shell_has_pipefail(job_runner: Any) -> None:
    run, _ = asyncio.run(job_runner(script("echo fine | cat\n", interpreter="sh")))
    assert run.result.outcome == SUCCEEDED
    assert run.output() == b"fine\n"


def test_other_interpreters_get_the_script_verbatim(job_runner: Any) -> None:
    run, _ = asyncio.run(
        job_runner(script("import sys\nprint('py', sys.argv[1:])\n", interpreter=sys.executable))
    )
    assert run.result.outcome == SUCCEEDED
    assert run.output() == b"py []\n"


def test_script_file_and_temp_dir_are_private_and_removed(job_runner: Any) -> None:
    run, _ = asyncio.run(
        job_runner(script('stat -c "%a" "$0" "$(dirname "$0")"; pwd; dirname "$0"\n'))
    )
    file_mode, dir_mode, cwd, temp_dir = run.output().decode().split()
    assert (file_mode, dir_mode) == ("600", "700")
    assert cwd.startswith(temp_dir)
    assert not os.path.exists(temp_dir)


def test_read_only_leftovers_are_removed(job_runner: Any) -> None:
    run, _ = asyncio.run(
        job_runner(script("mkdir -p cache/mod; touch cache/mod/f; chmod -R a-w cache; pwd"))
    )
    assert run.result.outcome == SUCCEEDED
    assert not os.path.exists(run.output().decode().strip())


def test_environment(job_runner: Any) -> None:
    env = {
        "PATH": os.environ["PATH"],
        "KEEP_ME": "1",
        "HODEI_BOOTSTRAP_TOKEN": "must-not-leak",
        "HODEI_SERVER": "x:1",
    }
    run, _ = asyncio.run(job_runner(command("env"), env=env))
    seen = dict(line.split("=", 1) for line in run.output().decode().splitlines())
    assert seen["HODEI_JOB_ID"] == "job-1"
    assert seen["HODEI_JOB_ATTEMPT"] == "1"
    assert seen["HODEI_WORKER_ID"] == "worker-1"
    assert seen["KEEP_ME"] == "1"
    assert "HODEI_BOOTSTRAP_TOKEN" not in seen
    assert "HODEI_SERVER" not in seen


def test_spec_env_is_added(job_runner: Any) -> None:
    run, _ = asyncio.run(
        job_runner(script('echo "$FROM_SPEC"', env={"FROM_SPEC": "yes", "HODEI_JOB_ID": "forged"}))
    )
    assert run.output() == b"yes\n"


def test_stdin_is_empty(job_runner: Any) -> None:
    run, _ = asyncio.run(job_runner(command("cat", timeout_seconds=5)))
    assert run.result.outcome == SUCCEEDED
    assert run.output() == b""


def test_working_dir(job_runner: Any, tmp_path: Path) -> None:
    run, _ = asyncio.run(job_runner(command("pwd", working_dir=str(tmp_path))))
    assert run.output() == f"{tmp_path}\n".encode()


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        (command("/nonexistent/hodei-test"), "failed to start: executable not found: "),
        (
            command("true", working_dir="/nonexistent/dir"),
            "failed to start: working directory '/nonexistent/dir' does not exist",
        ),
        (script("true", interpreter="hodei-no-such-shell"), "failed to start: executable not"),
        (jobs_pb2.JobSpec(), "failed to start: the spec must have exactly one of"),
        (command("/etc/passwd"), "failed to start: permission denied: /etc/passwd"),
    ],
)
def test_failure_to_start(job_runner: Any, spec: jobs_pb2.JobSpec, reason: str) -> None:
    run, _ = asyncio.run(job_runner(spec))
    assert run.pid is None
    assert [m.WhichOneof("msg") for m in run.messages] == ["job_finished"]
    finished = run.finished()
    assert finished.outcome == FAILED
    assert not finished.has_exit_code
    assert finished.reason.startswith(reason), finished.reason
    assert finished.last_seq == 0


def test_unacknowledged_output_in_memory_is_bounded(job_runner: Any) -> None:
    total = 50 * 1000 * 1000
    program = (
        "import os\n"
        "block = bytes(range(256)) * 4096\n"
        f"left = {total}\n"
        "while left:\n"
        "    n = os.write(1, block[: min(left, len(block))])\n"
        "    left -= n\n"
    )
    expected = hashlib.sha256()
    block = bytes(range(256)) * 4096
    left = total
    while left:
        expected.update(block[: min(left, len(block))])
        left -= min(left, len(block))
    peak = 0

    async def withhold_acks(runner: Any, reader: Any, pid: int) -> None:
        nonlocal peak
        # Without acks the agent stops reading at the bound; the rest waits in the file.
        for _ in range(30):
            await asyncio.sleep(0.1)
            peak = max(peak, reader.record.unacked_bytes)
        assert reader.bytes_received < total
        reader.acking.set()

    run, reader = asyncio.run(
        job_runner(
            command(sys.executable, "-c", program),
            while_running=withhold_acks,
            keep_data=False,
            acking=False,
        )
    )
    assert MAX_UNACKED_BYTES // 2 < peak <= MAX_UNACKED_BYTES
    assert run.result.outcome == SUCCEEDED
    assert reader.bytes_received == total
    assert reader.digest.hexdigest() == expected.hexdigest()
    assert [c.seq for c in run.chunks] == list(range(1, len(run.chunks) + 1))


def test_a_command_needs_one_directory_made_per_job_and_none_with_a_workdir(
    tmp_path: Path,
) -> None:
    from hodei_agent.launch import prepare_launch, remove_temp_dir

    job_id = f"launch-{uuid.uuid4()}"
    plain = prepare_launch(command("true"), job_id, 1, "w", {})
    try:
        assert plain.cwd == plain.temp_dir and os.listdir(plain.temp_dir) == []
        assert os.stat(plain.temp_dir).st_mode & 0o777 == 0o700
    finally:
        remove_temp_dir(plain.temp_dir)
    placed = prepare_launch(command("true", working_dir=str(tmp_path)), job_id, 2, "w", {})
    assert (placed.cwd, placed.temp_dir) == (str(tmp_path), "")
    scripted = prepare_launch(script("true"), job_id, 3, "w", {})
    try:  # a script's file stays out of its working directory
        assert scripted.cwd == os.path.join(scripted.temp_dir, "work")
        assert os.listdir(scripted.cwd) == []
    finally:
        remove_temp_dir(scripted.temp_dir)


def test_removing_a_temp_dir_changes_nothing_around_it(tmp_path: Path) -> None:
    """A temp dir already gone (an earlier agent removed it) is left at that: the folder
    that held it keeps its mode (it was /tmp, made 0700, which locked other users out)."""
    from hodei_agent.launch import remove_temp_dir

    holder = tmp_path / "holder"
    holder.mkdir()
    holder.chmod(0o1777)
    remove_temp_dir(str(holder / "gone"))
    remove_temp_dir("")
    assert holder.stat().st_mode & 0o7777 == 0o1777
    job = holder / "job"
    (job / "cache" / "mod").mkdir(parents=True)
    (job / "cache" / "mod" / "f").touch()
    for path in (job / "cache" / "mod", job / "cache", job):
        path.chmod(0o555)
    remove_temp_dir(str(job))
    assert not job.exists()
    assert holder.stat().st_mode & 0o7777 == 0o1777
