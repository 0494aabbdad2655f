"""SubmitJobs and `hodeictl job submit --count`: many jobs in one call, all or none."""

from __future__ import annotations

import json
import time

import grpc
import pytest

from hodei_api.v1 import jobs_pb2, jobs_pb2_grpc
from tests.e2e.harness import ServerProcess

pytestmark = pytest.mark.e2e


def one_line(output: bytes) -> str:
    text = output.decode().strip()
    assert "Traceback" not in text
    assert len(text.splitlines()) == 1, text
    return text


def all_jobs(stub: jobs_pb2_grpc.JobServiceStub) -> list[jobs_pb2.Job]:
    return list(stub.ListJobs(jobs_pb2.ListJobsRequest(page_size=1000), timeout=10).jobs)


def wait_succeeded(stub: jobs_pb2_grpc.JobServiceStub, ids: list[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        states = {j.id: j.state for j in all_jobs(stub)}
        if all(states.get(i) == jobs_pb2.JOB_STATE_SUCCEEDED for i in ids):
            return
        time.sleep(0.2)
    raise AssertionError(f"not all succeeded: {states}")


def test_a_batch_runs_every_job_and_answers_in_order(server: ServerProcess) -> None:
    with server.channel() as channel:
        stub = jobs_pb2_grpc.JobServiceStub(channel)
        request = jobs_pb2.SubmitJobsRequest(jobs=[
            jobs_pb2.SubmitJobRequest(spec=jobs_pb2.JobSpec(
                name=f"n{i}", command=["sh", "-c", f"exit {i % 2}"], max_attempts=1))
            for i in range(20)])
        request.jobs.append(jobs_pb2.SubmitJobRequest(  # an indexed job in the same call
            spec=jobs_pb2.JobSpec(name="fan", command=["true"], completions=3)))
        reply = stub.SubmitJobs(request, timeout=30)
        assert len(reply.jobs) == 21 and all(j.created for j in reply.jobs)
        ids = [j.id for j in reply.jobs]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            jobs = {j.id: j for j in all_jobs(stub)}
            if all(jobs[i].state in (jobs_pb2.JOB_STATE_SUCCEEDED, jobs_pb2.JOB_STATE_FAILED)
                   for i in ids):
                break
            time.sleep(0.2)
        for i, job_id in enumerate(ids[:20]):
            assert jobs[job_id].spec.name == f"n{i}"
            expected = jobs_pb2.JOB_STATE_FAILED if i % 2 else jobs_pb2.JOB_STATE_SUCCEEDED
            assert jobs[job_id].state == expected, jobs[job_id]
        assert jobs[ids[20]].state == jobs_pb2.JOB_STATE_SUCCEEDED
        assert jobs[ids[20]].spec.completions == 3


def test_one_bad_spec_refuses_the_whole_batch_naming_it(server: ServerProcess) -> None:
    with server.channel() as channel:
        stub = jobs_pb2_grpc.JobServiceStub(channel)
        good = jobs_pb2.SubmitJobRequest(spec=jobs_pb2.JobSpec(command=["true"]))
        bad = jobs_pb2.SubmitJobRequest(spec=jobs_pb2.JobSpec(command=["true"],
                                                              timeout_seconds=-5))
        with pytest.raises(grpc.RpcError) as caught:
            stub.SubmitJobs(jobs_pb2.SubmitJobsRequest(jobs=[good, good, bad, good]), timeout=10)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.details().startswith("jobs[2]: ")
        assert "timeout" in caught.value.details()
        unknown_dep = jobs_pb2.SubmitJobRequest(spec=jobs_pb2.JobSpec(
            command=["true"], after=[jobs_pb2.Dependency(
                job_id="00000000-0000-4000-8000-000000000000")]))
        with pytest.raises(grpc.RpcError) as caught:
            stub.SubmitJobs(jobs_pb2.SubmitJobsRequest(jobs=[good, unknown_dep]), timeout=10)
        assert caught.value.details().startswith("jobs[1]: "), caught.value.details()
        for empty in (jobs_pb2.SubmitJobsRequest(),
                      jobs_pb2.SubmitJobsRequest(jobs=[good] * 10_001)):
            with pytest.raises(grpc.RpcError) as caught:
                stub.SubmitJobs(empty, timeout=10)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert all_jobs(stub) == []  # nothing half-submitted


def test_submit_count_makes_a_job_array(server: ServerProcess) -> None:
    out = server.hodeictl("job", "submit", "--count", "12", "--idempotency-key", "arr",
                          "--", "true")
    assert out.returncode == 0, out.stderr
    ids = out.stdout.decode().split()
    assert len(set(ids)) == 12
    again = server.hodeictl("job", "submit", "--count", "12", "--idempotency-key", "arr",
                            "--", "true")
    assert again.returncode == 0 and again.stdout.decode().split() == ids
    assert "12 of the 12 jobs already existed" in again.stderr.decode()
    with server.channel() as channel:
        wait_succeeded(jobs_pb2_grpc.JobServiceStub(channel), ids)
    listing = json.loads(server.hodeictl("job", "list", "-o", "json").stdout)
    assert len(listing) == 12


def test_submit_count_bad_input_is_one_line(server: ServerProcess) -> None:
    for count in ("0", "-3", "many", "1000001"):
        out = server.hodeictl("job", "submit", "--count", count, "--", "true")
        assert out.returncode == 2
        assert "--count" in one_line(out.stderr) or "count" in one_line(out.stderr)
    out = server.hodeictl("job", "submit", "--count", "3", "--timeout", "-1", "--", "true")
    assert out.returncode == 2
    assert "timeout" in one_line(out.stderr)
    assert server.hodeictl("job", "list", "-o", "json").stdout.strip() == b"[]"
