"""Hostile values in every field: run as data or refused in one line; nothing is executed.

A real server with a real local agent; hand-driven agents for what a compromised worker
could send. Each test prints how many payloads got through.
"""

from __future__ import annotations

import io
import math
import tarfile
import uuid
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from google.protobuf import timestamp_pb2

from hodei_api.v1 import (
    agent_pb2,
    agent_pb2_grpc,
    jobs_pb2,
    logs_pb2,
    logs_pb2_grpc,
    workers_pb2,
    workers_pb2_grpc,
)
from hodei_server import config as server_config
from hodei_server.errors import ConfigError
from tests.e2e.docker_engine import (
    IMAGE,
    docker_host,  # noqa: F401  (fixture)
)
from tests.e2e.harness import ServerProcess
from tests.security.hostile_harness import (  # noqa: F401  (fixtures)
    LOCAL,
    NOWHERE,
    HandAgent,
    api_channel,
    jobs_stub,
    module_database_url_fixture,
    one_line,
    server_log_is_clean,
    serving,
    shared_server_fixture,
    wait_job,
)

pytestmark = pytest.mark.e2e


def payloads(canary: Path) -> list[str]:
    """Strings that would do harm if anything interpreted them instead of passing them on."""
    return [
        f"$(touch {canary})",
        f"`touch {canary}`",
        f"; touch {canary}",
        f"| touch {canary}",
        f"&& touch {canary} #",
        f"\ntouch {canary}\n",
        f"' ; touch {canary}; echo '",
        "' OR 1=1 --",
        "'; DROP TABLE jobs; --",
        '"; DROP TABLE workers; --',
        "{{7*7}}",
        "${7*7}",
        "%s%s%s%n",
        "../../etc/passwd",
        "\x1b[2J\x1b]0;pwned\x07",
        "\u202etxt.exe",
        "--help",
        "*",
        "$HOME",
        "A" * 100_000,
    ]


def logs_of(address: str, job_id: str) -> tuple[bytes, bytes]:
    out, err = bytearray(), bytearray()
    with api_channel(address) as channel:
        stub = logs_pb2_grpc.LogServiceStub(channel)
        for event in stub.StreamLogs(logs_pb2.StreamLogsRequest(job_id=job_id), timeout=30):
            if event.HasField("chunk"):
                target = err if event.chunk.stream == logs_pb2.LOG_STREAM_STDERR else out
                target += event.chunk.data
    return bytes(out), bytes(err)


def submit(address: str, spec: jobs_pb2.JobSpec, key: str = "") -> jobs_pb2.SubmitJobResponse:
    with api_channel(address) as channel:
        return jobs_stub(channel).SubmitJob(
            jobs_pb2.SubmitJobRequest(spec=spec, idempotency_key=key), timeout=30)


def try_submit(
    address: str, spec: jobs_pb2.JobSpec, key: str = ""
) -> tuple[jobs_pb2.SubmitJobResponse | None, str]:
    """(the reply, "") when the job was accepted, (None, the one-line refusal) when not."""
    try:
        return submit(address, spec, key), ""
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
        return None, one_line(error.details())


def test_payloads_in_args_and_env_run_as_data(
    shared_server: ServerProcess, tmp_path: Path
) -> None:
    canary = tmp_path / "pwned"
    address = shared_server.address
    jobs = []
    for payload in payloads(canary):
        args = submit(address, jobs_pb2.JobSpec(command=["printf", "%s", payload],
                                                selector=LOCAL)).job.id
        env = submit(address, jobs_pb2.JobSpec(command=["printenv", "HOSTILE"],
                                               env={"HOSTILE": payload}, selector=LOCAL)).job.id
        jobs.append((payload, args, env))
    nowhere = submit(address, jobs_pb2.JobSpec(
        command=["true"], working_dir=f"/tmp/$(touch {canary})", selector=LOCAL)).job.id
    assert wait_job(address, nowhere).state == jobs_pb2.JOB_STATE_FAILED
    for payload, args, env in jobs:
        assert wait_job(address, args).state == jobs_pb2.JOB_STATE_SUCCEEDED
        assert logs_of(address, args) == (payload.encode(), b"")
        assert wait_job(address, env).state == jobs_pb2.JOB_STATE_SUCCEEDED
        assert logs_of(address, env) == (payload.encode() + b"\n", b"")
    assert not canary.exists()
    print(f"executed: 0 of {2 * len(jobs)} payloads (each came back byte for byte)")


def test_payloads_in_every_other_field_round_trip_or_are_refused(
    shared_server: ServerProcess, tmp_path: Path
) -> None:
    canary = tmp_path / "pwned"
    address = shared_server.address
    fields = {
        "name": lambda p: jobs_pb2.JobSpec(name=p),
        "working_dir": lambda p: jobs_pb2.JobSpec(working_dir="/tmp/" + p),
        "labels key": lambda p: jobs_pb2.JobSpec(labels={p: "v"}),
        "labels value": lambda p: jobs_pb2.JobSpec(labels={"k": p}),
        "selector value": lambda p: jobs_pb2.JobSpec(selector={"k": p}),
        "env key": lambda p: jobs_pb2.JobSpec(env={p: "v"}),
        "interpreter": lambda p: jobs_pb2.JobSpec(script="true", interpreter=p),
        "retry.on": lambda p: jobs_pb2.JobSpec(retry=jobs_pb2.RetryPolicy(on=[p])),
    }
    expected_word = {"labels key": "labels", "labels value": "labels", "env key": "env",
                     "selector value": "selector", "retry.on": "retry.on"}
    tried = accepted = 0
    for field, build in fields.items():
        for payload in payloads(canary):
            spec = build(payload)
            if not spec.script:
                spec.command[:] = ["true"]
            spec.selector.update(NOWHERE)  # nothing accepted here may ever run
            tried += 1
            reply, message = try_submit(address, spec)
            if reply is not None:
                accepted += 1
                assert reply.job.spec == spec, field  # exactly what was sent: data, not code
            else:
                assert expected_word.get(field, field) in message, (field, message)
    # The idempotency key and a cancel reason: kept verbatim or refused in one line.
    for payload in payloads(canary):
        tried += 2
        spec = jobs_pb2.JobSpec(command=["true"], selector=NOWHERE)
        first, message = try_submit(address, spec, key=payload)
        if first is not None:
            again = submit(address, spec, payload)
            assert again.job.id == first.job.id and not again.created
        else:
            assert "idempotency key" in message
        job_id = submit(address, spec).job.id
        with api_channel(address) as channel:
            try:
                reply = jobs_stub(channel).CancelJob(
                    jobs_pb2.CancelJobRequest(id=job_id, reason=payload), timeout=10)
                assert reply.job.reason == payload
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert "reason" in one_line(error.details())
    assert not canary.exists()
    print(f"executed: 0 of {tried} payloads ({accepted} accepted as data, the rest refused)")


def test_sql_stays_intact(shared_server: ServerProcess) -> None:
    address = shared_server.address
    before = submit(address, jobs_pb2.JobSpec(command=["true"], selector=NOWHERE)).job.id
    for payload in ("' OR 1=1 --", "'; DROP TABLE jobs; --", "x' UNION SELECT * FROM workers --"):
        with api_channel(address) as channel:
            stub = jobs_stub(channel)
            for call, request in (
                (stub.GetJob, jobs_pb2.GetJobRequest(id=payload)),
                (stub.CancelJob, jobs_pb2.CancelJobRequest(id=payload)),
                (stub.ListJobs, jobs_pb2.ListJobsRequest(page_token=payload)),
            ):
                with pytest.raises(grpc.RpcError) as caught:
                    call(request, timeout=10)
                assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                one_line(caught.value.details())
        submit(address, jobs_pb2.JobSpec(name="sql:" + payload, command=["true"],
                                         selector=NOWHERE), key="sql:" + payload)
    with psycopg.connect(shared_server.database_url) as conn:
        tables = {row[0] for row in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert {"jobs", "workers", "events", "job_logs"} <= tables
        names = [row[0] for row in conn.execute("SELECT name FROM jobs WHERE name LIKE 'sql:%'")]
        assert sorted(names) == sorted(["sql:' OR 1=1 --", "sql:'; DROP TABLE jobs; --",
                                        "sql:x' UNION SELECT * FROM workers --"])
    with api_channel(address) as channel:
        assert jobs_stub(channel).GetJob(jobs_pb2.GetJobRequest(id=before), timeout=10).id
    print("injected: 0 of 3 SQL payloads (stored verbatim, tables intact)")


BAD_REQUESTS = [
    ("ListJobs", jobs_pb2.ListJobsRequest(page_size=-1), "page_size"),
    ("ListJobs", jobs_pb2.ListJobsRequest(states=[99]), "states"),
    ("ListJobs", jobs_pb2.ListJobsRequest(states=[1] * 100), "states"),
    ("ListJobs", jobs_pb2.ListJobsRequest(page_token="x" * 10_000), "page_token"),
    ("ListJobs", jobs_pb2.ListJobsRequest(filter=jobs_pb2.JobFilter(id_prefix="A5'")),
     "filter.id_prefix"),
    ("ListJobs", jobs_pb2.ListJobsRequest(filter=jobs_pb2.JobFilter(name_glob="a\x00")),
     "filter.name_glob"),
    ("ListJobs", jobs_pb2.ListJobsRequest(filter=jobs_pb2.JobFilter(
        created_after=timestamp_pb2.Timestamp(seconds=-1))), "filter.created_after"),
    # What a client from before fields 5 to 8 moved into JobFilter sends (id_prefix = 5).
    ("ListJobs", jobs_pb2.ListJobsRequest.FromString(b"\x2a\x02ab"), "fields of its filter"),
    ("WatchJobs", jobs_pb2.WatchJobsRequest(filter=jobs_pb2.JobFilter(id_prefix="zz")),
     "filter.id_prefix"),
    ("GetJob", jobs_pb2.GetJobRequest(id="../../etc/passwd"), "not a job id"),
    ("GetJob", jobs_pb2.GetJobRequest(id="x" * 1_000_000), "not a job id"),
    ("RetryJob", jobs_pb2.RetryJobRequest(id="\x00"), "not a job id"),
    ("CancelJob", jobs_pb2.CancelJobRequest(id=str(uuid.uuid4()), reason="a\x00b"), "reason"),
    ("CancelJob", jobs_pb2.CancelJobRequest(id=str(uuid.uuid4()), reason="r" * 5000), "reason"),
    ("DrainWorker", workers_pb2.DrainWorkerRequest(id="w"), "not a worker id"),
    ("DrainWorker", workers_pb2.DrainWorkerRequest(id=str(uuid.uuid4()), grace_seconds=math.nan),
     "grace"),
    ("DrainWorker", workers_pb2.DrainWorkerRequest(id=str(uuid.uuid4()), grace_seconds=-1),
     "grace"),
    ("StreamLogs", logs_pb2.StreamLogsRequest(job_id=str(uuid.uuid4()), after_seq=-1),
     "after_seq"),
    ("Register", agent_pb2.RegisterRequest(name="\x1b[2J"), "worker name"),
    ("Register", agent_pb2.RegisterRequest(name="w", hostname="h\x00"), "hostname"),
    ("Register", agent_pb2.RegisterRequest(
        name="w", capacity=workers_pb2.Capacity(slots=1, cpus=math.inf)), "capacity.cpus"),
    ("Register", agent_pb2.RegisterRequest(name="w", capacity=workers_pb2.Capacity(slots=0)),
     "capacity.slots"),
    ("Register", agent_pb2.RegisterRequest(name="w", bootstrap_token="t" * 100_000),
     "bootstrap_token"),
    ("SubmitJob", jobs_pb2.SubmitJobRequest(spec=jobs_pb2.JobSpec(
        command=["true"], resources=jobs_pb2.Resources(cpus=math.nan))), "resources.cpus"),
    ("SubmitJob", jobs_pb2.SubmitJobRequest(spec=jobs_pb2.JobSpec(
        command=["true"], timeout_seconds=math.inf)), "timeout"),
    ("SubmitJob", jobs_pb2.SubmitJobRequest(spec=jobs_pb2.JobSpec(
        command=["true"], retry=jobs_pb2.RetryPolicy(backoff_seconds=-math.inf))),
     "retry.backoff_seconds"),
    ("SubmitJob", jobs_pb2.SubmitJobRequest(spec=jobs_pb2.JobSpec(
        command=["a" * 100_000] * 20)), "add up to more than"),
    ("SubmitJob", jobs_pb2.SubmitJobRequest(spec=jobs_pb2.JobSpec(
        command=["true"], env={f"K{i}": "v" * 100_000 for i in range(30)})), "bytes"),
    ("SubmitJob", jobs_pb2.SubmitJobRequest(spec=jobs_pb2.JobSpec(
        command=["true"], labels={f"k{i}": "v" for i in range(100)})), "labels"),
    ("SubmitJob", jobs_pb2.SubmitJobRequest(spec=jobs_pb2.JobSpec(
        command=["true"], working_dir="relative/../dir")), "working_dir"),
    ("SubmitJob", jobs_pb2.SubmitJobRequest(spec=jobs_pb2.JobSpec(
        command=["true"], max_attempts=-1)), "max_attempts"),
]


def _stub_method(channel: grpc.Channel, method: str) -> object:
    for stub in (jobs_stub(channel), workers_pb2_grpc.WorkerServiceStub(channel),
                 logs_pb2_grpc.LogServiceStub(channel),
                 agent_pb2_grpc.WorkerAgentServiceStub(channel)):
        if hasattr(stub, method):
            return getattr(stub, method)
    raise AssertionError(method)


def test_every_rpc_field_is_checked(shared_server: ServerProcess) -> None:
    # Agents register without an API token (one would be refused on the agent service).
    with api_channel(shared_server.address) as channel, \
            grpc.insecure_channel(shared_server.address) as plain:
        for method, request, word in BAD_REQUESTS:
            call = _stub_method(plain if method == "Register" else channel, method)
            with pytest.raises(grpc.RpcError) as caught:
                result = call(request, timeout=10)  # type: ignore[operator]
                if method in ("StreamLogs", "WatchJobs"):
                    next(iter(result))
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, caught.value)
            assert word in one_line(caught.value.details()), (method, caught.value.details())
        # A page size beyond the cap is capped, not an error.
        jobs_stub(channel).ListJobs(jobs_pb2.ListJobsRequest(page_size=10**9), timeout=10)
    assert serving(shared_server.address)
    print(f"accepted: 0 of {len(BAD_REQUESTS)} invalid requests (each refused in one line)")


def test_a_worker_cannot_claim_labels_it_did_not_register_with(
    shared_server: ServerProcess,
) -> None:
    """A bootstrap token scoped to site=lab: the worker's Hello claiming site=prod (to attract
    jobs selecting it) changes nothing; its labels are the ones it registered with."""
    agent = HandAgent.register(shared_server.address, shared_server.database_url, "claimer",
                               grant={"site": "lab"})
    claim = agent.hello(labels={"site": "prod", "provider": "local", "gpu": "yes"})
    agent.stream([], hello=claim)
    with api_channel(shared_server.address) as channel:
        workers = workers_pb2_grpc.WorkerServiceStub(channel).ListWorkers(
            workers_pb2.ListWorkersRequest(), timeout=10).workers
    [worker] = [w for w in workers if w.id == agent.worker_id]
    assert dict(worker.labels) == {"site": "lab", "provider": "hand"}
    print("labels claimed beyond the registration: 0 of 3 accepted")


def test_an_agent_cannot_report_on_another_agents_job(
    shared_server: ServerProcess
) -> None:
    address = shared_server.address
    job = submit(address, jobs_pb2.JobSpec(command=["sh", "-c", "sleep 2; echo real"],
                                           selector=LOCAL)).job
    running = wait_running(address, job.id)
    intruder = HandAgent.register(address, shared_server.database_url, "intruder")
    forged = [
        agent_pb2.AgentMessage(job_accepted=agent_pb2.JobAccepted(
            job_id=job.id, attempt=running.attempt, pid=1)),
        *(agent_pb2.AgentMessage(log_chunk=logs_pb2.LogChunk(
            job_id=job.id, attempt=running.attempt, seq=seq,
            stream=logs_pb2.LOG_STREAM_STDOUT, data=b"forged\n")) for seq in (1, 2, 3)),
        agent_pb2.AgentMessage(log_chunk=logs_pb2.LogChunk(
            job_id=job.id, attempt=running.attempt + 1, seq=1,
            stream=logs_pb2.LOG_STREAM_STDOUT, data=b"forged next attempt\n")),
        agent_pb2.AgentMessage(job_finished=agent_pb2.JobFinished(
            job_id=job.id, attempt=running.attempt, has_exit_code=True, exit_code=0,
            outcome=jobs_pb2.JOB_STATE_SUCCEEDED, reason="forged", last_seq=3)),
        agent_pb2.AgentMessage(job_finished=agent_pb2.JobFinished(
            job_id=job.id, attempt=running.attempt, has_exit_code=True, exit_code=1,
            outcome=jobs_pb2.JOB_STATE_FAILED, reason="forged", last_seq=3)),
    ]
    end = intruder.stream(forged)
    assert end.code == grpc.StatusCode.OK, end
    # The same reports in one batch fare no better.
    end = intruder.stream([_batch(*forged)])
    assert end.code == grpc.StatusCode.OK, end
    with api_channel(address) as channel:
        now = jobs_stub(channel).GetJob(jobs_pb2.GetJobRequest(id=job.id), timeout=10)
    assert now.state == jobs_pb2.JOB_STATE_RUNNING and now.worker_id == running.worker_id
    final = wait_job(address, job.id)
    assert final.state == jobs_pb2.JOB_STATE_SUCCEEDED and final.reason != "forged"
    assert [a.worker_id for a in final.attempts] == [running.worker_id]
    assert logs_of(address, job.id) == (b"real\n", b"")
    print(f"stored: 0 of {2 * len(forged)} reports forged by another worker "
          "(sent one by one, then as one batch)")


def wait_running(address: str, job_id: str) -> jobs_pb2.Job:
    import time

    deadline = time.monotonic() + 30
    with api_channel(address) as channel:
        while True:
            job = jobs_stub(channel).GetJob(jobs_pb2.GetJobRequest(id=job_id), timeout=10)
            if job.state == jobs_pb2.JOB_STATE_RUNNING or time.monotonic() > deadline:
                assert job.state == jobs_pb2.JOB_STATE_RUNNING, job
                return job
            time.sleep(0.05)


def _chunk(job_id: str, seq: int, **fields: object) -> agent_pb2.AgentMessage:
    values: dict[str, object] = {"job_id": job_id, "attempt": 1, "seq": seq,
                                 "stream": logs_pb2.LOG_STREAM_STDOUT, "data": b"x"}
    values.update(fields)
    return agent_pb2.AgentMessage(log_chunk=logs_pb2.LogChunk(**values))  # type: ignore[arg-type]


def _finished(**fields: object) -> agent_pb2.AgentMessage:
    values: dict[str, object] = {"job_id": str(uuid.uuid4()), "attempt": 1,
                                 "outcome": jobs_pb2.JOB_STATE_SUCCEEDED}
    values.update(fields)
    return agent_pb2.AgentMessage(
        job_finished=agent_pb2.JobFinished(**values))  # type: ignore[arg-type]


def _batch(*messages: agent_pb2.AgentMessage) -> agent_pb2.AgentMessage:
    return agent_pb2.AgentMessage(batch=agent_pb2.AgentBatch(messages=messages))


JOB = str(uuid.uuid4())
BAD_AGENT_MESSAGES: list[tuple[str, list[agent_pb2.AgentMessage], str]] = [
    ("empty oneof", [agent_pb2.AgentMessage()], "carries nothing"),
    ("chunk stream 7", [_chunk(JOB, 1, stream=7)], "log_chunk.stream"),
    ("chunk seq 0", [_chunk(JOB, 0)], "log_chunk.seq"),
    ("chunk seq 2**60", [_chunk(JOB, 2**60)], "log_chunk.seq"),
    ("chunk seq going back", [_chunk(JOB, 5), _chunk(JOB, 3)], "does not follow"),
    ("chunk for a path", [_chunk("../../etc/passwd", 1)], "log_chunk.job_id"),
    ("chunk attempt 0", [_chunk(JOB, 1, attempt=0)], "log_chunk.attempt"),
    ("outcome RUNNING", [_finished(outcome=jobs_pb2.JOB_STATE_RUNNING)], "outcome"),
    ("outcome 99", [_finished(outcome=99)], "outcome"),
    ("exit code 999", [_finished(has_exit_code=True, exit_code=999)], "exit_code"),
    ("exit code -1", [_finished(has_exit_code=True, exit_code=-1)], "exit_code"),
    ("NUL in reason", [_finished(reason="a\x00b")], "NUL"),
    ("negative last_seq", [_finished(last_seq=-1)], "last_seq"),
    ("accepted pid -5", [agent_pb2.AgentMessage(job_accepted=agent_pb2.JobAccepted(
        job_id=JOB, attempt=1, pid=-5))], "pid"),
    ("NaN metric", [agent_pb2.AgentMessage(heartbeat=agent_pb2.Heartbeat(
        metrics=workers_pb2.WorkerMetrics(cpu_percent=math.nan)))], "cpu_percent"),
    ("negative running jobs", [agent_pb2.AgentMessage(heartbeat=agent_pb2.Heartbeat(
        running_jobs=-1))], "running_jobs"),
    ("empty batch", [agent_pb2.AgentMessage(batch=agent_pb2.AgentBatch())], "batch: empty"),
    ("batch in a batch", [_batch(_batch(_chunk(JOB, 1)))], "a batch holds no batch"),
    ("hello in a batch", [_batch(agent_pb2.AgentMessage(hello=agent_pb2.Hello()))],
     "a batch holds no hello"),
    ("broken message in a batch", [_batch(_chunk(JOB, 1), _chunk(JOB, 2, stream=7))],
     "log_chunk.stream"),
    ("chunk seq going back after a batch", [_batch(_chunk(JOB, 5)), _chunk(JOB, 3)],
     "does not follow"),
    ("batch of 4097", [_batch(*[agent_pb2.AgentMessage(heartbeat=agent_pb2.Heartbeat())] * 4097)],
     "more than 4096"),
]


def test_the_agent_stream_refuses_broken_messages(shared_server: ServerProcess) -> None:
    agent = HandAgent.register(shared_server.address, shared_server.database_url)
    for name, messages, word in BAD_AGENT_MESSAGES:
        end = agent.stream(messages)
        assert end.code == grpc.StatusCode.INVALID_ARGUMENT, (name, end)
        assert word in one_line(end.details), (name, end.details)
    for name, hello, word in [
        ("bad hello label", agent.hello(labels={"bad key!": "x"}), "hello.labels"),
        ("bad hello job", agent.hello(running=[agent_pb2.RunningJob(job_id="x", attempt=1)]),
         "hello.running.job_id"),
        ("bad hello capacity", agent.hello(capacity=workers_pb2.Capacity(slots=-3)),
         "hello.capacity.slots"),
        ("no hello", _chunk(JOB, 1), "expected Hello first"),
    ]:
        end = agent.stream([hello], hello=False)
        assert end.code == grpc.StatusCode.INVALID_ARGUMENT, (name, end)
        assert word in one_line(end.details), (name, end.details)
    # A well-behaved stream from the same agent still works, and the server is healthy.
    ok = agent.stream([agent_pb2.AgentMessage(heartbeat=agent_pb2.Heartbeat())])
    assert ok.code == grpc.StatusCode.OK, ok
    assert serving(shared_server.address)
    print(f"accepted: 0 of {len(BAD_AGENT_MESSAGES) + 4} broken agent messages")


def test_bytes_that_are_not_protobuf_are_refused(shared_server: ServerProcess) -> None:
    agent = HandAgent.register(shared_server.address, shared_server.database_url)
    metadata = (("authorization", f"Bearer {agent.credential}"),
                ("x-hodei-worker-id", agent.worker_id))
    garbage = [b"\xff\xff\xff", b"\x0a\x05\x0a\x03\xff\xfe\xfd", b"\x0a"]
    with api_channel(shared_server.address) as api, \
            grpc.insecure_channel(shared_server.address) as channel:
        for method in ("/hodei.api.v1.JobService/SubmitJob", "/hodei.api.v1.JobService/GetJob",
                       "/hodei.api.v1.WorkerService/DrainWorker",
                       "/hodei.api.v1.WorkerAgentService/Register"):
            call = (channel if "WorkerAgentService" in method else api).unary_unary(method)
            for data in garbage:
                with pytest.raises(grpc.RpcError) as caught:
                    call(data, timeout=10)
                assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value
                assert "malformed request" in one_line(caught.value.details())
        stream = channel.stream_stream("/hodei.api.v1.WorkerAgentService/Connect")
        for before in ([], [agent.hello().SerializeToString()]):
            with pytest.raises(grpc.RpcError) as caught:
                list(stream(iter([*before, b"\xff\xff"]), metadata=metadata, timeout=10))
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value
            assert "malformed request" in one_line(caught.value.details())
    assert serving(shared_server.address)
    server_log_is_clean(shared_server)
    print(f"accepted: 0 of {4 * len(garbage) + 2} unparseable messages")


def test_oversized_messages(shared_server: ServerProcess, tmp_path: Path) -> None:
    # A job file too big for the server's spec limit, then too big for gRPC's.
    for size, word in ((3 * 1024 * 1024, "at most"), (9 * 1024 * 1024, "too large")):
        job = tmp_path / f"big-{size}.toml"
        job.write_text(f'script = "echo {"x" * size}"\n')
        out = shared_server.hodeictl("job", "submit", "-f", str(job))
        assert out.returncode == 2, out
        line = one_line(out.stderr.decode().removesuffix("\n"))
        assert line.startswith("hodeictl: invalid job") and word in line, line
        assert len(line) < 300, line
    # An agent sending a chunk over the limit has its stream closed; it can come back.
    agent = HandAgent.register(shared_server.address, shared_server.database_url)
    end = agent.stream([_chunk(JOB, 1, data=b"x" * (9 * 1024 * 1024))])
    assert end.code == grpc.StatusCode.RESOURCE_EXHAUSTED, end
    assert one_line(end.details)
    assert serving(shared_server.address)
    again = agent.stream([agent_pb2.AgentMessage(heartbeat=agent_pb2.Heartbeat())])
    assert again.code == grpc.StatusCode.OK, again
    print("accepted: 0 of 3 oversized messages")


def test_the_cli_reports_refusals_in_one_line(shared_server: ServerProcess) -> None:
    cases = [
        (("--name", "\x1b[2Jx"), "name"),
        (("--name", "a\u202eb"), "name"),
        (("-l", "team=$(touch /tmp/x)"), "labels"),
        (("-s", "k=`id`"), "selector"),
        (("-e", "BAD-KEY=1"), "env"),
        (("-w", "relative"), "working_dir"),
        (("--idempotency-key", "k\nv"), "idempotency key"),
    ]
    for options, word in cases:
        out = shared_server.hodeictl("job", "submit", *options, "--", "true")
        assert out.returncode == 2, (options, out)
        line = one_line(out.stderr.decode().removesuffix("\n"))
        assert word in line and "\x1b" not in line and "\u202e" not in line, line
    print(f"tracebacks: 0 of {len(cases)} refused submissions")


@pytest.mark.parametrize(
    ("provider", "word"),
    [
        ('type = "docker"\nname = "d"\nimage = "alpine; touch /tmp/pwned"', "image"),
        ('type = "docker"\nname = "d"\nimage = "$(id)"', "image"),
        ('type = "docker"\nname = "d"\nimage = "Alpine:latest"', "image"),
        ('type = "docker"\nname = "d"\nimage = "alpine:-bad"', "image"),
        ('type = "docker"\nname = "d"\nimage = "../../etc/passwd"', "image"),
        ('type = "local"\nname = "x; rm -rf /"', "name"),
        ('type = "local"\nname = "$(touch /tmp/pwned)"', "name"),
        ('type = "local"\nname = "l"\nlabels = { "k" = "v v" }', "labels"),
    ],
)
def test_provider_config_refuses_hostile_names(tmp_path: Path, provider: str, word: str) -> None:
    path = tmp_path / "server.toml"
    path.write_text(f"[[providers]]\n{provider}\n")
    with pytest.raises(ConfigError) as caught:
        server_config.load(path)
    assert word in caught.value.message and "\n" not in caught.value.message


@pytest.mark.parametrize("image", [
    "hodei-agent:latest", "ubuntu", "library/ubuntu:24.04", "localhost:5000/team/agent",
    "registry.example.com/a/b/c:v1.2_3", "[::1]:5000/agent:x",
    "agent@sha256:" + "a" * 64, "example.com/agent:1@sha256:" + "0" * 64,
])
def test_valid_image_references_are_accepted(tmp_path: Path, image: str) -> None:
    path = tmp_path / "server.toml"
    path.write_text(f'[[providers]]\ntype = "docker"\nname = "d"\nimage = "{image}"\n')
    assert server_config.load(path).providers[0].image == image  # type: ignore[attr-defined]


def _file_in(container: Any, path: str) -> bytes | None:
    """The content of a file in a container (running or not); None if there is none."""
    import docker.errors

    try:
        stream, _ = container.get_archive(path)
    except docker.errors.NotFound:
        return None
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as archive:
        member = archive.extractfile(archive.getmembers()[0])
        assert member is not None
        return member.read()


def test_the_docker_provider_passes_values_as_data(request: pytest.FixtureRequest) -> None:
    """Container args, labels and the token file carry hostile text verbatim; no shell runs."""
    import asyncio

    import docker

    from hodei_plugins.docker.provider import LABEL_WORKER, DockerProvider, DockerProviderConfig

    engine: str = request.getfixturevalue("docker_host")  # an engine and the agent image
    canary = "/tmp/hodei-hostile-canary"
    payload = f"$(touch {canary}); touch {canary}; `touch {canary}`"
    config = DockerProviderConfig(name="hostile", docker_host=engine, image=IMAGE)
    name = f"hostile-{uuid.uuid4().hex[:6]}"

    async def run() -> dict[str, object]:
        async with DockerProvider(config) as provider:
            container_id = await provider.create_worker(
                name=name, bootstrap_token=payload, server_address=f"127.0.0.1:1 {payload}",
                labels={"team": payload}, slots=1)
            try:
                client = docker.DockerClient(base_url=engine, version="auto")
                container = client.containers.get(container_id)
                # Read from the container's file system, which works whether or not its
                # agent still runs (with that server address it gives up soon).
                token = _file_in(container, "/tmp/hodei-bootstrap-token")
                touched = _file_in(container, canary) is not None
                client.close()
                return {"config": container.attrs["Config"], "token": token,
                        "touched": touched}
            finally:
                await provider.destroy_worker(container_id)

    seen = asyncio.run(run())
    config_seen = seen["config"]
    assert isinstance(config_seen, dict)
    assert config_seen["Entrypoint"] == ["python3", "-m", "hodei_agent"]  # no shell
    assert f"127.0.0.1:1 {payload}" in config_seen["Cmd"]
    assert f"team={payload}" in config_seen["Cmd"]
    assert config_seen["Labels"][LABEL_WORKER] == name
    assert seen["token"] == payload.encode()
    assert seen["touched"] is False
    assert not Path(canary).exists()
    print("executed: 0 of 3 payloads passed to a container (args, label, token file)")
