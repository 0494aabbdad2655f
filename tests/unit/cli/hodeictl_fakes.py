"""Test scaffolding: hodeictl run in-process, real gRPC servers with canned servicers."""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import os
import sys
import textwrap
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path

import grpc
import pytest
from typer.testing import CliRunner, Result

from hodei_api.v1 import (
    jobs_pb2,
    jobs_pb2_grpc,
    logs_pb2,
    logs_pb2_grpc,
    workers_pb2,
    workers_pb2_grpc,
)
from hodeictl import app

Register = Callable[[grpc.aio.Server], None]


# Plays `hodei_server.embedded`: serves a real gRPC JobService and WorkerService, writes
# `stack.json` when ready and removes it on SIGTERM.
FAKE_STACK_MODULE = "fake_hodei_stack"
FAKE_STACK = textwrap.dedent(
    """
    import asyncio, json, os, signal, sys, time
    import grpc
    from hodei_api.v1 import jobs_pb2, jobs_pb2_grpc, workers_pb2, workers_pb2_grpc

    class Jobs(jobs_pb2_grpc.JobServiceServicer):
        async def ListJobs(self, request, context):
            return jobs_pb2.ListJobsResponse()

    class Workers(workers_pb2_grpc.WorkerServiceServicer):
        async def ListWorkers(self, request, context):
            return workers_pb2.ListWorkersResponse(workers=[workers_pb2.Worker(id="w1")])

    async def main(home):
        print("fake stack starting", flush=True)
        if os.environ.get("FAKE_STACK_FAIL"):
            print("boom: cannot start PostgreSQL", flush=True)
            sys.exit(3)
        server = grpc.aio.server()
        jobs_pb2_grpc.add_JobServiceServicer_to_server(Jobs(), server)
        workers_pb2_grpc.add_WorkerServiceServicer_to_server(Workers(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        info = {
            "pid": os.getpid(),
            "address": f"127.0.0.1:{port}",
            "database_url": os.environ.get("HODEI_DATABASE_URL", "postgresql://private/db"),
            "started_at": time.time(),
        }
        path = os.path.join(home, "stack.json")
        with open(path + ".tmp", "w") as file:
            json.dump(info, file)
        os.replace(path + ".tmp", path)
        await stop.wait()
        os.remove(path)
        await server.stop(None)

    if "--stop" not in sys.argv:  # with it: nothing is ever left over
        asyncio.run(main(sys.argv[sys.argv.index("--home") + 1]))
    """
)


def install_fake_stack(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Make `python -m fake_hodei_stack` importable by child processes."""
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / f"{FAKE_STACK_MODULE}.py").write_text(FAKE_STACK)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(modules), *sys.path]))


def invoke(*args: str) -> Result:
    """Run hodeictl in-process, as the console script would."""
    return CliRunner().invoke(app.app, list(args), prog_name="hodeictl")


@contextlib.contextmanager
def serve(register: Register) -> Iterator[str]:
    """A real grpc.aio server on 127.0.0.1:0, run by its own event loop in a thread."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict[str, object] = {}

    async def start() -> None:
        server = grpc.aio.server()
        register(server)
        holder["port"] = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        holder["server"] = server
        started.set()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        loop.run_forever()

    thread = threading.Thread(target=run, name="test-grpc-server", daemon=True)
    thread.start()
    assert started.wait(10), "test gRPC server did not start"
    server = holder["server"]
    assert isinstance(server, grpc.aio.Server)
    try:
        yield f"127.0.0.1:{holder['port']}"
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(None), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def chunk(seq: int, stream: int, data: bytes, attempt: int = 1) -> logs_pb2.LogChunk:
    """A log chunk of job "" (the fake log service fills in the requested job)."""
    return logs_pb2.LogChunk(attempt=attempt, seq=seq, stream=stream, data=data)


def finished(state: int, exit_code: int | None = None, reason: str = "") -> jobs_pb2.Job:
    """A finished job as LogEnd carries it."""
    return jobs_pb2.Job(
        state=state,
        has_exit_code=exit_code is not None,
        exit_code=exit_code or 0,
        reason=reason,
        attempt=1,
    )


class FakeJobService(jobs_pb2_grpc.JobServiceServicer):
    """Jobs kept in a dict, newest first; pages are at most `page_size` long."""

    def __init__(self, jobs: Iterable[jobs_pb2.Job] = (), page_size: int = 3) -> None:
        self.jobs = {job.id: job for job in jobs}
        self.page_size = page_size
        self.submitted: list[jobs_pb2.SubmitJobRequest] = []
        self.list_requests: list[jobs_pb2.ListJobsRequest] = []

    async def SubmitJob(
        self, request: jobs_pb2.SubmitJobRequest, context: grpc.aio.ServicerContext
    ) -> jobs_pb2.SubmitJobResponse:
        self.submitted.append(request)
        job = jobs_pb2.Job(
            id=str(uuid.uuid4()), spec=request.spec, state=jobs_pb2.JOB_STATE_PENDING
        )
        self.jobs[job.id] = job
        return jobs_pb2.SubmitJobResponse(job=job, created=True)

    async def _job(self, job_id: str, context: grpc.aio.ServicerContext) -> jobs_pb2.Job:
        if job_id not in self.jobs:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"job {job_id} not found")
        return self.jobs[job_id]

    async def GetJob(
        self, request: jobs_pb2.GetJobRequest, context: grpc.aio.ServicerContext
    ) -> jobs_pb2.Job:
        return await self._job(request.id, context)

    async def ListJobs(
        self, request: jobs_pb2.ListJobsRequest, context: grpc.aio.ServicerContext
    ) -> jobs_pb2.ListJobsResponse:
        self.list_requests.append(request)
        wanted = request.filter
        matching = [
            job for job in self.jobs.values()
            if (not request.states or job.state in request.states)
            and (not wanted.states or job.state in wanted.states)
            and job.id.startswith(wanted.id_prefix)
            and (not wanted.name_glob or fnmatch.fnmatchcase(job.spec.name, wanted.name_glob))
            and all(job.spec.labels.get(k) == v for k, v in wanted.labels.items())
            and (not wanted.HasField("created_after")
                 or job.created_at.ToNanoseconds() >= wanted.created_after.ToNanoseconds())
        ]
        start = int(request.page_token or 0)
        end = start + min(request.page_size or self.page_size, self.page_size)
        return jobs_pb2.ListJobsResponse(
            jobs=matching[start:end], next_page_token=str(end) if end < len(matching) else ""
        )

    async def CancelJob(
        self, request: jobs_pb2.CancelJobRequest, context: grpc.aio.ServicerContext
    ) -> jobs_pb2.CancelJobResponse:
        job = await self._job(request.id, context)
        if job.state >= jobs_pb2.JOB_STATE_SUCCEEDED:
            return jobs_pb2.CancelJobResponse(job=job, changed=False)
        job.state = jobs_pb2.JOB_STATE_CANCELLED
        return jobs_pb2.CancelJobResponse(job=job, changed=True)


class AbortingJobService(jobs_pb2_grpc.JobServiceServicer):
    """Every call fails with the given status."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self.code = code
        self.details = details

    async def _abort(self, request: object, context: grpc.aio.ServicerContext) -> None:
        await context.abort(self.code, self.details)

    SubmitJob = GetJob = ListJobs = CancelJob = _abort


class FakeLogService(logs_pb2_grpc.LogServiceServicer):
    """Streams `chunks` after the resume point, then LogEnd(final).

    `breaks[n]` makes call n+1 fail with UNAVAILABLE after at most that many chunks;
    `honour_resume=False` resends everything on every call; `hold` never ends the stream.
    """

    def __init__(
        self,
        chunks: list[logs_pb2.LogChunk],
        final: jobs_pb2.Job,
        breaks: tuple[int, ...] = (),
        honour_resume: bool = True,
        hold: bool = False,
    ) -> None:
        self.chunks = chunks
        self.final = final
        self.breaks = breaks
        self.honour_resume = honour_resume
        self.hold = hold
        self.requests: list[logs_pb2.StreamLogsRequest] = []
        self.subscribed = threading.Event()

    async def StreamLogs(
        self, request: logs_pb2.StreamLogsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[logs_pb2.LogEvent]:
        self.requests.append(request)
        self.subscribed.set()
        call = len(self.requests)
        limit = self.breaks[call - 1] if call <= len(self.breaks) else None
        resume = (request.after_attempt, request.after_seq)
        sent = 0
        for item in self.chunks:
            if self.honour_resume and (item.attempt, item.seq) <= resume:
                continue
            if sent == limit:
                break
            out = logs_pb2.LogChunk()
            out.CopyFrom(item)
            out.job_id = request.job_id
            yield logs_pb2.LogEvent(chunk=out)
            sent += 1
        if limit is not None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "server restarting")
        if self.hold:
            await asyncio.Event().wait()
        if request.follow or self.final.state >= jobs_pb2.JOB_STATE_SUCCEEDED:
            end = jobs_pb2.Job()
            end.CopyFrom(self.final)
            end.id = request.job_id
            yield logs_pb2.LogEvent(end=logs_pb2.LogEnd(job=end))


class FakeWorkerService(workers_pb2_grpc.WorkerServiceServicer):
    """Canned workers; `all` adds the gone ones."""

    def __init__(self, workers: list[workers_pb2.Worker]) -> None:
        self.workers = workers

    async def ListWorkers(
        self, request: workers_pb2.ListWorkersRequest, context: grpc.aio.ServicerContext
    ) -> workers_pb2.ListWorkersResponse:
        gone = (workers_pb2.WORKER_STATE_TERMINATED, workers_pb2.WORKER_STATE_LOST)
        return workers_pb2.ListWorkersResponse(
            workers=[w for w in self.workers if request.all or w.state not in gone]
        )


def services(
    jobs: jobs_pb2_grpc.JobServiceServicer | None = None,
    logs: FakeLogService | None = None,
    workers: FakeWorkerService | None = None,
) -> Register:
    """A `serve()` registration for the given servicers."""

    def register(server: grpc.aio.Server) -> None:
        if jobs is not None:
            jobs_pb2_grpc.add_JobServiceServicer_to_server(jobs, server)
        if logs is not None:
            logs_pb2_grpc.add_LogServiceServicer_to_server(logs, server)
        if workers is not None:
            workers_pb2_grpc.add_WorkerServiceServicer_to_server(workers, server)

    return register
