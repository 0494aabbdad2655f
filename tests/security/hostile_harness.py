"""A real server for the hostile-input tests, and a hand-driven agent to misbehave with."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from psycopg.conninfo import make_conninfo

from hodei_api.v1 import agent_pb2, agent_pb2_grpc, jobs_pb2, jobs_pb2_grpc, workers_pb2
from tests.conftest import _admin_execute
from tests.e2e.harness import ServerProcess, token_channel

# Test modules import the *_fixture functions; tests ask for the fixtures by their names.
# Jobs of these tests run only on the provider's agents, never on a hand-driven one.
LOCAL = {"provider": "local"}
# Fuzzed jobs must never run anything: no worker has this label.
NOWHERE = {"fuzz.hodei.io/never": "true"}


@pytest.fixture(scope="module", name="module_database_url")
def module_database_url_fixture(pg_admin_url: str, template_db: str) -> Iterator[str]:
    """A fresh database shared by one test module (its server outlives single tests)."""
    name = f"hodei_s_{uuid.uuid4().hex[:12]}"
    _admin_execute(pg_admin_url, f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    try:
        yield make_conninfo(pg_admin_url, dbname=name)
    finally:
        _admin_execute(pg_admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# The admin API token of each server these fixtures started, by address.
_TOKENS: dict[str, str] = {}


def api_channel(address: str) -> grpc.Channel:
    """A channel to the API of a server started here, carrying its admin token (the
    hostile input must reach the validators, not stop at authentication)."""
    return token_channel(address, _TOKENS.get(address, ""))


@pytest.fixture(scope="module", name="shared_server")
def shared_server_fixture(
    tmp_path_factory: pytest.TempPathFactory, module_database_url: str
) -> Iterator[ServerProcess]:
    """One real server with one local agent of four slots, for a whole module."""
    proc = ServerProcess(tmp_path_factory.mktemp("server"), module_database_url, workers=1)
    proc.start()
    _TOKENS[proc.address] = proc.token
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module", name="idle_server")
def idle_server_fixture(
    tmp_path_factory: pytest.TempPathFactory, module_database_url: str
) -> Iterator[ServerProcess]:
    """A real server with no agents at all: whatever fuzzing gets accepted never runs."""
    proc = ServerProcess(tmp_path_factory.mktemp("idle"), module_database_url, workers=0)
    proc.start()
    _TOKENS[proc.address] = proc.token
    try:
        yield proc
    finally:
        proc.stop()


def mint_token(database_url: str, labels: dict[str, str] | None = None) -> str:
    """A one-time bootstrap token, as `hodei-server token create` makes it."""
    from hodei_server.store import db
    from hodei_server.store.jobs import JobStore
    from hodei_server.store.workers import WorkerStore

    async def create() -> str:
        pool = await db.open_pool(database_url, min_size=1, max_size=1)
        try:
            return await WorkerStore(pool, JobStore(pool)).create_bootstrap_token(
                "manual", labels or {}, 600.0)
        finally:
            await pool.close()

    return asyncio.run(create())


def serving(address: str) -> bool:
    with api_channel(address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5)
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def jobs_stub(channel: grpc.Channel) -> jobs_pb2_grpc.JobServiceStub:
    return jobs_pb2_grpc.JobServiceStub(channel)


def one_line(details: str | None) -> str:
    text = details or ""
    assert "\n" not in text and "\r" not in text, text
    assert "Traceback" not in text, text
    return text


@dataclass
class StreamEnd:
    code: grpc.StatusCode
    details: str
    replies: list[agent_pb2.ServerMessage]


@dataclass
class HandAgent:
    """A worker registered with a real token whose stream the test writes by hand."""

    address: str
    worker_id: str
    credential: str

    @classmethod
    def register(cls, address: str, database_url: str, name: str = "hand",
                 grant: dict[str, str] | None = None) -> HandAgent:
        with grpc.insecure_channel(address) as channel:
            reply = agent_pb2_grpc.WorkerAgentServiceStub(channel).Register(
                agent_pb2.RegisterRequest(
                    bootstrap_token=mint_token(database_url, grant), name=name, hostname="hand",
                    capacity=workers_pb2.Capacity(slots=1), agent_version="test",
                    # Labels no job of these tests selects: the dispatcher never gives this
                    # agent work.
                    labels={"provider": "hand"},
                ),
                timeout=10,
            )
        return cls(address, reply.worker_id, reply.credential)

    def hello(self, **fields: object) -> agent_pb2.AgentMessage:
        fields.setdefault("labels", {"provider": "hand"})
        fields.setdefault("capacity", workers_pb2.Capacity(slots=1))
        return agent_pb2.AgentMessage(
            hello=agent_pb2.Hello(worker_id=self.worker_id, **fields))  # type: ignore[arg-type]

    def stream(
        self, messages: Iterable[agent_pb2.AgentMessage], *,
        hello: bool | agent_pb2.AgentMessage = True,
        timeout: float = 15.0,
    ) -> StreamEnd:
        """Send Hello (unless told not to; this one if given) and `messages`, half-close,
        read to the end."""
        metadata = (("authorization", f"Bearer {self.credential}"),
                    ("x-hodei-worker-id", self.worker_id))
        outgoing = ([hello] if isinstance(hello, agent_pb2.AgentMessage)
                    else [self.hello()] if hello else [])
        outgoing += list(messages)
        replies: list[agent_pb2.ServerMessage] = []
        with grpc.insecure_channel(
            self.address, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]
        ) as channel:
            call = agent_pb2_grpc.WorkerAgentServiceStub(channel).Connect(
                iter(outgoing), metadata=metadata, timeout=timeout)
            try:
                for reply in call:  # a batch is its messages, as for a real agent
                    replies.extend(reply.batch.messages if reply.WhichOneof("msg") == "batch"
                                   else [reply])
            except grpc.RpcError as error:
                return StreamEnd(error.code(), error.details() or "", replies)
            return StreamEnd(call.code(), call.details() or "", replies)


def wait_job(address: str, job_id: str, timeout: float = 60.0) -> jobs_pb2.Job:
    """The job once it is in a final state."""
    import time

    final = {jobs_pb2.JOB_STATE_SUCCEEDED, jobs_pb2.JOB_STATE_FAILED,
             jobs_pb2.JOB_STATE_CANCELLED, jobs_pb2.JOB_STATE_TIMED_OUT}
    deadline = time.monotonic() + timeout
    with api_channel(address) as channel:
        stub = jobs_stub(channel)
        while True:
            job = stub.GetJob(jobs_pb2.GetJobRequest(id=job_id), timeout=10)
            if job.state in final or time.monotonic() > deadline:
                return job
            time.sleep(0.05)


def server_log_is_clean(server: ServerProcess) -> None:
    """No traceback and no 'unexpected error' in the server's log."""
    text = Path(server.log_path).read_text(errors="replace")
    assert "Traceback" not in text, text[-4000:]
    assert "unexpected error" not in text, text[-4000:]
    assert "could not store its messages" not in text, text[-4000:]
