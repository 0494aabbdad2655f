"""Fixtures for the agent's tests: running real jobs through the runner and the outbox, and a
small in-process gRPC server that plays the control plane's side of the agent protocol."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
import pytest

from hodei_agent.batcher import DEFAULT_LIMITS, BatchLimits
from hodei_agent.keeperclient import KeeperClient
from hodei_agent.outbox import MAX_UNACKED_BYTES, JobRecord, Outbox
from hodei_agent.runner import JobResult, JobRunner
from hodei_agent.statedir import StateDir
from hodei_api.v1 import agent_pb2, agent_pb2_grpc, jobs_pb2, logs_pb2

STDOUT = logs_pb2.LOG_STREAM_STDOUT
STDERR = logs_pb2.LOG_STREAM_STDERR


# ---- running one job through runner + batcher + outbox ---------------------------------


@dataclass
class JobRun:
    """Everything one job attempt sent, in the order the outbox released it."""

    result: JobResult
    messages: list[agent_pb2.AgentMessage]
    pid: int | None

    @property
    def chunks(self) -> list[logs_pb2.LogChunk]:
        return [m.log_chunk for m in self.messages if m.WhichOneof("msg") == "log_chunk"]

    def output(self, stream: logs_pb2.LogStream = STDOUT) -> bytes:
        return b"".join(chunk.data for chunk in self.chunks if chunk.stream == stream)

    def finished(self) -> agent_pb2.JobFinished:
        kinds = [m.WhichOneof("msg") for m in self.messages]
        assert kinds.count("job_finished") == 1 and kinds[-1] == "job_finished", kinds
        return self.messages[-1].job_finished


class OutboxReader:
    """Plays the server: takes what the outbox releases and (unless paused) acknowledges it."""

    def __init__(self, outbox: Outbox, *, acking: bool = True) -> None:
        self.outbox = outbox
        self.messages: list[agent_pb2.AgentMessage] = []
        self.acking = asyncio.Event()
        if acking:
            self.acking.set()
        self.bytes_received = 0
        self.digest = hashlib.sha256()
        self.keep_data = True
        self.record: JobRecord | None = None

    async def run(self) -> None:
        """Consume until a JobFinished was taken."""
        while True:
            self.outbox.changed.clear()
            batch = self.outbox.take_unsent(1000)
            for message in batch:
                self._receive(message)
                if message.WhichOneof("msg") == "job_finished":
                    return
            if not batch:
                await self.outbox.changed.wait()

    def _receive(self, message: agent_pb2.AgentMessage) -> None:
        if message.WhichOneof("msg") == "log_chunk":
            chunk = message.log_chunk
            self.bytes_received += len(chunk.data)
            self.digest.update(chunk.data)
            if not self.keep_data:
                message = agent_pb2.AgentMessage(
                    log_chunk=logs_pb2.LogChunk(
                        job_id=chunk.job_id,
                        attempt=chunk.attempt,
                        seq=chunk.seq,
                        stream=chunk.stream,
                    )
                )
            asyncio.get_running_loop().create_task(self._ack(chunk))
        self.messages.append(message)

    async def _ack(self, chunk: logs_pb2.LogChunk) -> None:
        await self.acking.wait()
        self.outbox.ack_chunks(
            agent_pb2.LogAck(job_id=chunk.job_id, attempt=chunk.attempt, up_to_seq=chunk.seq)
        )


async def run_job(
    spec: jobs_pb2.JobSpec,
    *,
    env: Mapping[str, str] | None = None,
    limits: BatchLimits = DEFAULT_LIMITS,
    max_unacked_bytes: int = MAX_UNACKED_BYTES,
    while_running: Callable[[JobRunner, OutboxReader, int], Coroutine[Any, Any, None]]
    | None = None,
    keep_data: bool = True,
    acking: bool = True,
    cgroups: bool = True,
) -> tuple[JobRun, OutboxReader]:
    """Run `spec` as job "job-1" attempt 1 and collect what it sends.

    `while_running(runner, reader, pid)` is awaited once the process started. `cgroups`:
    False has the keeper contain the job in its process group only.
    """
    outbox = Outbox(max_unacked_bytes)
    record = outbox.open("job-1", 1)
    state = StateDir.open(None)
    files = state.new_job("job-1", 1)
    record.journal = files.open_journal()
    reader = OutboxReader(outbox, acking=acking)
    reader.keep_data = keep_data
    reader.record = record
    keeper = KeeperClient(cgroups=cgroups)
    runner = JobRunner(
        "job-1",
        1,
        spec,
        worker_id="worker-1",
        sink=record,
        files=files,
        keeper=keeper,
        base_env=env if env is not None else {"PATH": "/usr/local/bin:/usr/bin:/bin"},
        limits=limits,
    )
    started: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    consumer = asyncio.create_task(reader.run())

    def on_started(pid: int) -> None:
        record.accept(pid)
        started.set_result(pid)

    job = asyncio.create_task(runner.run(on_started))
    helper: asyncio.Task[None] | None = None
    if while_running is not None:
        await asyncio.wait({job, started}, return_when=asyncio.FIRST_COMPLETED)
        if started.done():
            helper = asyncio.create_task(while_running(runner, reader, started.result()))
    try:
        result = await job
        record.finish(result.outcome, exit_code=result.exit_code, reason=result.reason)
        async with asyncio.timeout(30):
            await consumer
            if helper is not None:
                await helper
    finally:
        keeper.close()
        files.remove()
        state.close()
    return JobRun(result, reader.messages, started.result() if started.done() else None), reader


@pytest.fixture
def job_runner() -> Callable[..., Awaitable[tuple[JobRun, OutboxReader]]]:
    return run_job


# ---- a scripted control plane ---------------------------------------------------------

# How long the fake server waits for the agent's next move before failing the test.
PATIENCE = 15.0
WORKER_ID = "worker-7"
CREDENTIAL = "secret-credential"


@dataclass
class Connection:
    """One Connect stream, seen from the server."""

    metadata: dict[str, str]
    received: asyncio.Queue[agent_pb2.AgentMessage] = field(default_factory=asyncio.Queue)
    outgoing: asyncio.Queue[agent_pb2.ServerMessage | grpc.StatusCode | None] = field(
        default_factory=asyncio.Queue
    )

    async def next_message(self) -> agent_pb2.AgentMessage:
        """The next message other than a heartbeat."""
        async with asyncio.timeout(PATIENCE):
            while True:
                message = await self.received.get()
                if message.WhichOneof("msg") != "heartbeat":
                    return message

    async def expect(self, kind: str) -> agent_pb2.AgentMessage:
        """The next message other than a heartbeat; it must be of `kind`."""
        message = await self.next_message()
        assert message.WhichOneof("msg") == kind, message
        return message

    async def until_finished(
        self, jobs: int = 1, *, ack: bool = True
    ) -> list[agent_pb2.AgentMessage]:
        """Messages up to the `jobs`-th JobFinished, acknowledging chunks and results."""
        messages: list[agent_pb2.AgentMessage] = []
        while jobs:
            message = await self.next_message()
            messages.append(message)
            kind = message.WhichOneof("msg")
            if kind == "job_finished":
                jobs -= 1
            if not ack:
                continue
            if kind == "log_chunk":
                chunk = message.log_chunk
                self.send(
                    log_ack=agent_pb2.LogAck(
                        job_id=chunk.job_id, attempt=chunk.attempt, up_to_seq=chunk.seq
                    )
                )
            elif kind == "job_finished":
                done = message.job_finished
                self.send(
                    finished_ack=agent_pb2.FinishedAck(job_id=done.job_id, attempt=done.attempt)
                )
        return messages

    async def expect_heartbeat(self) -> agent_pb2.Heartbeat:
        async with asyncio.timeout(PATIENCE):
            while True:
                message = await self.received.get()
                if message.WhichOneof("msg") == "heartbeat":
                    return message.heartbeat

    def send(self, **kwargs: object) -> None:
        self.outgoing.put_nowait(agent_pb2.ServerMessage(**kwargs))  # type: ignore[arg-type]

    def end(self, code: grpc.StatusCode | None = None) -> None:
        """End the stream, cleanly (None) or with an error status."""
        self.outgoing.put_nowait(code)


class FakeControlPlane(agent_pb2_grpc.WorkerAgentServiceServicer):
    """The server side of the agent protocol, driven by the test."""

    def __init__(self) -> None:
        self.registrations: list[agent_pb2.RegisterRequest] = []
        self.connections: asyncio.Queue[Connection] = asyncio.Queue()
        self.register_error: grpc.StatusCode | None = None
        self.known_credentials = {CREDENTIAL}
        # Seconds before refusing an unknown credential: lets a test race the agent's Hello.
        self.refuse_after = 0.0

    async def Register(
        self, request: agent_pb2.RegisterRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.RegisterResponse:
        self.registrations.append(request)
        if self.register_error is not None:
            await context.abort(self.register_error, "token unknown or already used")
        return agent_pb2.RegisterResponse(
            worker_id=WORKER_ID, credential=CREDENTIAL, heartbeat_interval_seconds=0.5
        )

    async def Connect(
        self,
        request_iterator: AsyncIterator[agent_pb2.AgentMessage],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[agent_pb2.ServerMessage]:
        metadata = {key: value for key, value in context.invocation_metadata()}
        if metadata.get("authorization") not in {f"Bearer {c}" for c in self.known_credentials}:
            await asyncio.sleep(self.refuse_after)
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "unknown worker")
        connection = Connection(metadata)
        self.connections.put_nowait(connection)

        async def receive() -> None:
            async for message in request_iterator:
                # A batch is handled as its messages one by one, as the real server does.
                batched = message.WhichOneof("msg") == "batch"
                for each in message.batch.messages if batched else [message]:
                    connection.received.put_nowait(each)
            connection.end()  # the agent half-closed: end our side too

        receiver = asyncio.create_task(receive())
        try:
            while True:
                item = await connection.outgoing.get()
                if item is None:
                    return
                if isinstance(item, grpc.StatusCode):
                    await context.abort(item, "scripted failure")
                yield item
        finally:
            receiver.cancel()

    async def next_connection(self) -> Connection:
        async with asyncio.timeout(PATIENCE):
            return await self.connections.get()


@dataclass
class Served:
    control: FakeControlPlane
    server: grpc.aio.Server
    address: str


@contextlib.asynccontextmanager
async def serve(port: int = 0, control: FakeControlPlane | None = None) -> AsyncIterator[Served]:
    """Serve a (new or given) fake control plane on 127.0.0.1:`port` (0: any free port)."""
    control = control or FakeControlPlane()
    server = grpc.aio.server()
    agent_pb2_grpc.add_WorkerAgentServiceServicer_to_server(control, server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    try:
        yield Served(control, server, f"127.0.0.1:{bound}")
    finally:
        await server.stop(0)


@pytest.fixture
def control_plane() -> Callable[..., contextlib.AbstractAsyncContextManager[Served]]:
    """`async with control_plane() as served:` runs a `FakeControlPlane` behind real gRPC."""
    return serve
