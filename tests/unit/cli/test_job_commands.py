"""`hodeictl job ...` against a real gRPC server with canned servicers."""

from __future__ import annotations

import json
import uuid

import pytest
from hodeictl_fakes import (
    FakeJobService,
    FakeLogService,
    chunk,
    finished,
    invoke,
    serve,
    services,
)
from typer.testing import Result

from hodei_api.v1 import jobs_pb2
from hodeictl import client

STDOUT, STDERR = 1, 2
# Not UTF-8, NUL bytes, no trailing newline: the output must pass through untouched.
CHUNKS = [
    chunk(1, STDOUT, b"hello \xff\xfe\n"),
    chunk(2, STDERR, b"warn\x00ing\n"),
    chunk(3, STDOUT, b"caf\xc3"),
    chunk(4, STDOUT, b"\xa9 \r\n"),
    chunk(5, STDERR, b"tail without newline"),
]
EXPECTED_STDOUT = b"hello \xff\xfe\ncaf\xc3\xa9 \r\n"
EXPECTED_STDERR = b"warn\x00ing\ntail without newline"


def run_job(logs: FakeLogService, *args: str) -> tuple[FakeJobService, Result]:
    jobs = FakeJobService()
    with serve(services(jobs=jobs, logs=logs)) as address:
        result = invoke("--server", address, "job", "run", *args)
    return jobs, result


def test_run_writes_output_byte_exact_and_exits_with_the_job_code() -> None:
    logs = FakeLogService(CHUNKS, finished(jobs_pb2.JOB_STATE_FAILED, exit_code=3))
    jobs, result = run_job(logs, "-e", "A=1", "--", "make", "-k", "--name", "x")
    assert result.exit_code == 3
    assert result.stdout_bytes == EXPECTED_STDOUT
    assert result.stderr_bytes == EXPECTED_STDERR
    # Chunks are flushed one by one: the two streams interleave as they were produced.
    assert result.output_bytes == b"".join(c.data for c in CHUNKS)
    (submitted,) = jobs.submitted
    assert list(submitted.spec.command) == ["make", "-k", "--name", "x"]
    assert dict(submitted.spec.env) == {"A": "1"}
    assert logs.requests[0].follow
    assert logs.requests[0].job_id == next(iter(jobs.jobs))


def test_run_exits_zero_when_the_job_succeeds() -> None:
    logs = FakeLogService(CHUNKS[:1], finished(jobs_pb2.JOB_STATE_SUCCEEDED, exit_code=0))
    _, result = run_job(logs, "--script", "echo hi", "--interpreter", "bash")
    assert result.exit_code == 0
    assert result.stderr_bytes == b""


@pytest.mark.parametrize(
    ("final", "code", "line"),
    [
        (finished(jobs_pb2.JOB_STATE_TIMED_OUT, reason="timed out"), 124, "timed out."),
        (finished(jobs_pb2.JOB_STATE_TIMED_OUT, exit_code=143), 124, "timed out."),
        (
            finished(jobs_pb2.JOB_STATE_CANCELLED, reason="by alice"),
            130,
            "was cancelled: by alice.",
        ),
        (
            finished(jobs_pb2.JOB_STATE_FAILED, reason="failed to start: no such file"),
            1,
            "failed: failed to start: no such file.",
        ),
        (
            finished(jobs_pb2.JOB_STATE_LOST, reason="worker vanished"),
            1,
            "was lost: worker vanished.",
        ),
    ],
)
def test_run_says_how_a_job_ended_without_an_exit_code(
    final: jobs_pb2.Job, code: int, line: str
) -> None:
    logs = FakeLogService([], final)
    jobs, result = run_job(logs, "--", "sleep", "100")
    job_id = next(iter(jobs.jobs))
    assert result.exit_code == code
    assert result.stderr == f"Job {job_id} {line}\n"
    assert result.stdout_bytes == b""


def test_run_resumes_a_broken_stream_without_losing_or_repeating_output() -> None:
    logs = FakeLogService(CHUNKS, finished(jobs_pb2.JOB_STATE_SUCCEEDED, 0), breaks=(2, 1))
    _, result = run_job(logs, "--", "true")
    assert result.exit_code == 0
    assert result.stdout_bytes == EXPECTED_STDOUT
    assert result.stderr_bytes == EXPECTED_STDERR
    resume_points = [(r.after_attempt, r.after_seq) for r in logs.requests]
    assert resume_points == [(0, 0), (1, 2), (1, 3)]


def test_run_drops_chunks_a_server_resends_after_reconnecting() -> None:
    logs = FakeLogService(
        CHUNKS, finished(jobs_pb2.JOB_STATE_SUCCEEDED, 0), breaks=(3,), honour_resume=False
    )
    _, result = run_job(logs, "--", "true")
    assert result.stdout_bytes == EXPECTED_STDOUT
    assert result.stderr_bytes == EXPECTED_STDERR


def test_run_keeps_resuming_while_the_stream_makes_progress(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(client, "RECONNECT_BACKOFF", 0.01)
    breaks = (1,) * (len(CHUNKS) + 1)
    logs = FakeLogService(CHUNKS, finished(jobs_pb2.JOB_STATE_SUCCEEDED, 0), breaks=breaks)
    _, result = run_job(logs, "--", "true")
    assert result.exit_code == 0
    assert result.stdout_bytes == EXPECTED_STDOUT
    assert len(logs.requests) == len(CHUNKS) + 2


def test_run_gives_up_when_the_stream_keeps_breaking(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client, "RECONNECT_BACKOFF", 0.01)
    breaks = (2,) + (0,) * 20
    logs = FakeLogService(CHUNKS, finished(jobs_pb2.JOB_STATE_SUCCEEDED, 0), breaks=breaks)
    _, result = run_job(logs, "--", "true")
    assert result.exit_code == 69
    assert "cannot reach the Hodei server" in result.stderr
    assert "server restarting" in result.stderr
    assert len(logs.requests) == 1 + client.RECONNECT_ATTEMPTS
    # What did arrive was written once.
    assert result.stdout_bytes == CHUNKS[0].data


def test_run_detach_and_submit_print_only_the_id() -> None:
    jobs = FakeJobService()
    with serve(services(jobs=jobs)) as address:
        detached = invoke("--server", address, "job", "run", "-d", "--", "true")
        submitted = invoke("--server", address, "job", "submit", "--idempotency-key", "k", "ls")
    ids = list(jobs.jobs)
    assert detached.stdout == f"{ids[0]}\n"
    assert submitted.stdout == f"{ids[1]}\n"
    assert jobs.submitted[1].idempotency_key == "k"


def test_run_merges_the_job_file_with_the_command_line() -> None:
    jobs = FakeJobService()
    with serve(services(jobs=jobs)) as address:
        result = invoke(
            "--server", address, "job", "submit", "-f", "examples/env-timeout.toml",
            "-e", "GREETING=hi", "--timeout", "90s", "--label", "k=v",
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    spec = jobs.submitted[0].spec
    assert dict(spec.env) == {"GREETING": "hi", "TARGET": "world", "NAP": "2"}
    assert spec.timeout_seconds == 90
    assert dict(spec.labels) == {"k": "v"}
    assert spec.name == "greet-then-wait"


def test_logs_without_follow_prints_the_history() -> None:
    logs = FakeLogService(CHUNKS, finished(jobs_pb2.JOB_STATE_RUNNING))
    job_id = str(uuid.uuid4())
    with serve(services(logs=logs)) as address:
        result = invoke("--server", address, "job", "logs", job_id)
    assert result.exit_code == 0
    assert result.stdout_bytes == EXPECTED_STDOUT
    assert result.stderr_bytes == EXPECTED_STDERR
    assert not logs.requests[0].follow


def test_logs_follow_exits_with_the_job_code() -> None:
    logs = FakeLogService(CHUNKS, finished(jobs_pb2.JOB_STATE_FAILED, exit_code=7))
    with serve(services(logs=logs)) as address:
        result = invoke("--server", address, "job", "logs", "-f", str(uuid.uuid4()))
    assert result.exit_code == 7
    assert result.stdout_bytes == EXPECTED_STDOUT


def _job(state: int, n: int) -> jobs_pb2.Job:
    return jobs_pb2.Job(
        id=str(uuid.UUID(int=n)),
        state=state,
        spec=jobs_pb2.JobSpec(name=f"job-{n}", command=["echo", str(n)]),
    )


def test_list_follows_pages_up_to_the_limit() -> None:
    jobs = FakeJobService([_job(jobs_pb2.JOB_STATE_RUNNING, n) for n in range(7)], page_size=3)
    with serve(services(jobs=jobs)) as address:
        result = invoke("--server", address, "job", "list", "--limit", "5", "-o", "json")
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert [job["spec"]["name"] for job in listed] == [f"job-{n}" for n in range(5)]
    assert {job["state"] for job in listed} == {"running"}
    assert [r.page_token for r in jobs.list_requests] == ["", "3"]
    assert jobs.list_requests[1].page_size == 2


def test_list_filters_states_case_insensitively() -> None:
    jobs = FakeJobService(
        [_job(jobs_pb2.JOB_STATE_RUNNING, 1), _job(jobs_pb2.JOB_STATE_TIMED_OUT, 2)]
    )
    with serve(services(jobs=jobs)) as address:
        result = invoke("--server", address, "job", "list", "--state", "TIMED_OUT")
    assert result.exit_code == 0, result.output
    assert list(jobs.list_requests[0].filter.states) == [jobs_pb2.JOB_STATE_TIMED_OUT]
    assert "job-2" in result.stdout and "TIMED_OUT" in result.stdout
    assert "job-1" not in result.stdout


def test_get_shows_a_job_as_table_and_json() -> None:
    job = _job(jobs_pb2.JOB_STATE_SUCCEEDED, 9)
    job.has_exit_code = True
    job.attempts.add(attempt=1, worker_id="w-1", state=jobs_pb2.JOB_STATE_SUCCEEDED)
    job.spec.resources.memory_mb = 512
    with serve(services(jobs=FakeJobService([job]))) as address:
        table = invoke("--server", address, "job", "get", job.id)
        as_json = invoke("--server", address, "job", "get", job.id, "-o", "json")
    assert table.exit_code == 0, table.output
    assert "SUCCEEDED" in table.stdout and "w-1" in table.stdout and "echo 9" in table.stdout
    data = json.loads(as_json.stdout)
    assert data["state"] == "succeeded"
    assert data["attempts"][0]["state"] == "succeeded"
    assert data["exit_code"] == 0
    assert data["spec"]["resources"]["memory_mb"] == 512


def test_cancel_reports_the_new_state_or_a_no_op() -> None:
    running, done = _job(jobs_pb2.JOB_STATE_RUNNING, 1), _job(jobs_pb2.JOB_STATE_SUCCEEDED, 2)
    with serve(services(jobs=FakeJobService([running, done]))) as address:
        cancelled = invoke("--server", address, "job", "cancel", running.id)
        no_op = invoke("--server", address, "job", "cancel", done.id)
    assert cancelled.exit_code == 0
    assert cancelled.stdout == f"Job {running.id}: CANCELLED\n"
    assert no_op.exit_code == 0
    assert no_op.stdout == f"Job {done.id} already finished (SUCCEEDED); nothing to cancel.\n"
