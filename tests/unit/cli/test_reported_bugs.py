"""Each of these was seen by someone using hodeictl; each test fails on the old behaviour."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import grpc
import pytest
from hodeictl_fakes import FakeJobService, FakeWorkerService, invoke, serve, services

from hodei_api.v1 import jobs_pb2, workers_pb2
from hodeictl import durations, jobfile, values
from hodeictl.commands import stack, token
from hodeictl.embedded import StackInfo
from hodeictl.errors import UsageError


def _job(state: int, **fields: object) -> jobs_pb2.Job:
    job = jobs_pb2.Job(id=str(uuid.uuid4()), state=state, **fields)  # type: ignore[arg-type]
    job.spec.command.extend(["sleep", "60"])
    return job


class RealisticCancel(FakeJobService):
    """Like the server: cancelling a running job asks its agent to stop it; the job stays
    RUNNING until the agent reports it ended."""

    async def CancelJob(self, request: jobs_pb2.CancelJobRequest,
                        context: grpc.aio.ServicerContext) -> jobs_pb2.CancelJobResponse:
        job = await self._job(request.id, context)
        if job.state == jobs_pb2.JOB_STATE_PENDING:
            job.state = jobs_pb2.JOB_STATE_CANCELLED
        return jobs_pb2.CancelJobResponse(job=job, changed=True)


def test_cancel_of_a_running_job_does_not_print_the_state_before_the_cancel() -> None:
    running = _job(jobs_pb2.JOB_STATE_RUNNING)
    pending = _job(jobs_pb2.JOB_STATE_PENDING)
    with serve(services(jobs=RealisticCancel([running, pending]))) as address:
        stopping = invoke("--server", address, "job", "cancel", running.id)
        cancelled = invoke("--server", address, "job", "cancel", pending.id)
    assert stopping.exit_code == 0, stopping.output
    assert stopping.stdout == (f"Job {running.id}: cancelling (it was RUNNING; its process is "
                               "being stopped)\n")
    assert cancelled.stdout == f"Job {pending.id}: CANCELLED\n"


def test_a_retried_job_never_shows_more_attempts_than_it_may_have() -> None:
    # `job retry` gives a job that had its one attempt a second: "2 of 1" was shown.
    job = _job(jobs_pb2.JOB_STATE_RUNNING, attempt=2)
    job.spec.max_attempts = 1
    with serve(services(jobs=FakeJobService([job]))) as address:
        shown = invoke("--server", address, "job", "get", job.id)
        listed = invoke("--server", address, "job", "list", "-o", "wide")
    assert "Attempt:" in shown.stdout
    attempt_line = next(line for line in shown.stdout.splitlines()
                        if line.startswith("Attempt:"))
    assert attempt_line.split(":", 1)[1].strip() == "2 of 2"
    assert "2/2" in listed.stdout.split() and "2/1" not in listed.stdout


def test_a_pending_job_has_no_exit_code_in_json() -> None:
    pending = _job(jobs_pb2.JOB_STATE_PENDING)
    done = _job(jobs_pb2.JOB_STATE_FAILED, has_exit_code=True, exit_code=0)
    done.attempts.add(attempt=1, state=jobs_pb2.JOB_STATE_LOST)
    with serve(services(jobs=FakeJobService([pending, done]))) as address:
        got = invoke("--server", address, "job", "get", pending.id, "-o", "json")
        listed = invoke("--server", address, "job", "list", "-o", "json")
    assert json.loads(got.stdout)["exit_code"] is None
    by_id = {job["id"]: job for job in json.loads(listed.stdout)}
    assert by_id[pending.id]["exit_code"] is None
    assert by_id[done.id]["exit_code"] == 0  # a real 0 stays 0
    assert by_id[done.id]["attempts"][0]["exit_code"] is None


def test_a_terminated_worker_holds_no_slots() -> None:
    gone = workers_pb2.Worker(
        id=str(uuid.uuid4()), name="gone-1", state=workers_pb2.WORKER_STATE_TERMINATED,
        running_jobs=2, capacity=workers_pb2.Capacity(slots=4))
    gone.last_heartbeat_at.FromSeconds(int(time.time()) - 60)
    with serve(services(workers=FakeWorkerService([gone]))) as address:
        listed = invoke("--server", address, "worker", "list", "--all")
        as_json = invoke("--server", address, "worker", "list", "--all", "-o", "json")
    row = next(line for line in listed.stdout.splitlines() if "gone-1" in line)
    assert "0/4" in row.split() and "2/4" not in row
    assert json.loads(as_json.stdout)[0]["running_jobs"] == 0


def test_detach_takes_no_value(tmp_path: Path) -> None:
    service = FakeJobService()
    with serve(services(jobs=service)) as address:
        refused = invoke("--server", address, "job", "run", "--detach", "true")
        also = invoke("--server", address, "job", "run", "-d", "false")
        meant = invoke("--server", address, "job", "run", "--detach", "--", "true")
    assert refused.exit_code == 2 and also.exit_code == 2
    assert refused.stderr == ("hodeictl: --detach takes no value; to run 'true' as the command, "
                              "put it after --: hodeictl job run --detach -- true\n")
    # Only `--detach -- true` reached the server, and it runs `true`.
    assert len(service.submitted) == 1
    assert list(service.submitted[0].spec.command) == ["true"]
    assert meant.exit_code == 0 and uuid.UUID(meant.stdout.strip())


class TokenCheckingWorkers(FakeWorkerService):
    """Refuses a call without the stack's token, as the real server does."""

    def __init__(self, token_value: str) -> None:
        super().__init__([workers_pb2.Worker(id="w1", state=workers_pb2.WORKER_STATE_READY)])
        self.token_value = token_value
        self.anonymous_calls = 0

    async def ListWorkers(self, request: workers_pb2.ListWorkersRequest,
                          context: grpc.aio.ServicerContext) -> workers_pb2.ListWorkersResponse:
        metadata = dict(context.invocation_metadata() or ())
        if metadata.get("authorization") != f"Bearer {self.token_value}":
            self.anonymous_calls += 1
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "an API token is needed")
        return await super().ListWorkers(request, context)


def test_status_asks_the_stack_with_its_own_token() -> None:
    workers = TokenCheckingWorkers("hodei_stack_token")
    with serve(services(workers=workers)) as address:
        info = StackInfo(pid=1, address=address, database_url="", started_at=0.0,
                         token="hodei_stack_token")
        answer = asyncio.run(stack._server_status(info))
    assert answer == "answering, 1 worker"
    assert workers.anonymous_calls == 0  # no refusal, so no "anonymous refused" audit row


# ---- one duration grammar ------------------------------------------------------------------


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90), ("5m", 300), ("1h30m", 5400), ("2d", 172800), ("1d12h", 129600),
    ("90", 90), (90, 90), ("1.5m", 90),
])
def test_one_grammar_for_options_files_and_expiry(text: str | int, seconds: float) -> None:
    assert values.duration(values.MAX_TIMEOUT_SECONDS)(text) == seconds
    reader = jobfile._JobFileReader(Path("job.toml"))
    assert reader.duration(text, "timeout", values.MAX_TIMEOUT_SECONDS) == seconds
    if isinstance(text, str):
        assert token.parse_expiry(text) == seconds


def test_timeout_1d_and_expires_1d12h_are_taken() -> None:
    # Both were refused by one of the three parsers there were.
    assert values.duration(values.MAX_TIMEOUT_SECONDS)("1d") == 86400
    assert token.parse_expiry("1d12h") == 129600
    assert token.parse_expiry("90d") == 90 * 86400
    assert token.parse_expiry("never") == 0


def test_every_bad_duration_reads_the_same(tmp_path: Path) -> None:
    expected = "'1x' is not a duration from 0 to 366 days, such as 90s, 5m, 1h30m or 2d"
    with pytest.raises(ValueError) as option:
        values.duration(values.MAX_TIMEOUT_SECONDS)("1x")
    assert str(option.value) == expected
    path = tmp_path / "job.toml"
    path.write_text('command = ["true"]\ntimeout = "1x"\n')
    with pytest.raises(UsageError) as in_file:
        jobfile.load(path)
    assert str(in_file.value).endswith(f"'timeout': {expected}")
    with pytest.raises(UsageError) as expiry:
        token.parse_expiry("1x")
    assert "'1x' is not a duration from 0 to 3660 days, such as 90s, 5m, 1h30m or 2d" in str(
        expiry.value)
    cli = invoke("job", "submit", "--timeout", "1x", "--", "true")
    assert cli.exit_code == 2 and cli.stderr == f"hodeictl: --timeout: {expected}\n"


def test_durations_refuse_what_is_not_one() -> None:
    for text in ("", "m", "5x", "-5m", "1h-30m", "nan", "inf", "1e3"):
        with pytest.raises(ValueError):
            durations.parse(text)


def test_plugin_list_prints_no_warning_from_the_ssh_librarys_dsa(tmp_path: Path) -> None:
    # cryptography warned "DSA is deprecated" through asyncssh on every `plugin list`.
    import subprocess
    import sys

    done = subprocess.run([str(Path(sys.executable).with_name("hodeictl")), "plugin", "list"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stderr
    assert "ssh" in done.stdout
    assert done.stderr == ""
