"""The console fed fixed data, for snapshots that do not change from run to run.

Times are set relative to now in whole minutes, so the ages drawn ("5m") are stable.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from google.protobuf import timestamp_pb2

from hodei_api.v1 import auth_pb2, events_pb2, jobs_pb2, logs_pb2, secrets_pb2, workers_pb2
from hodeictl.target import Settings
from hodeictl.tui import feeds
from hodeictl.tui.app import HodeiApp

# When the data was made: ages are drawn relative to it (see `refresh`).
_NOW = [time.time()]


def at(minutes: int) -> timestamp_pb2.Timestamp:
    """A fixed wall-clock time (events show the time of day, not an age)."""
    stamp = timestamp_pb2.Timestamp()
    stamp.FromSeconds(1_780_000_000 + minutes * 60)
    return stamp


def ago(minutes: int) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromSeconds(int(_NOW[0] - minutes * 60 - 10))
    return stamp


def _workers() -> list[workers_pb2.Worker]:
    return [
        workers_pb2.Worker(
            id=f"00000000-0000-4000-8000-00000000000{i}", name=f"local-{i}", provider="local",
            state=state, capacity=workers_pb2.Capacity(slots=4), running_jobs=running,
            labels={"os": "linux", "zone": f"z{i}"}, last_heartbeat_at=ago(1),
            registered_at=ago(30), metrics=workers_pb2.WorkerMetrics(load_average=0.5 * i,
                                                                     cpu_percent=10.0 * i))
        for i, (state, running) in enumerate([
            (workers_pb2.WORKER_STATE_BUSY, 3), (workers_pb2.WORKER_STATE_READY, 0),
            (workers_pb2.WORKER_STATE_DRAINING, 1)], start=1)
    ]


WORKERS = _workers()
STATES = [jobs_pb2.JOB_STATE_RUNNING, jobs_pb2.JOB_STATE_SUCCEEDED, jobs_pb2.JOB_STATE_FAILED,
          jobs_pb2.JOB_STATE_PENDING, jobs_pb2.JOB_STATE_CANCELLED,
          jobs_pb2.JOB_STATE_TIMED_OUT]


def _job(n: int) -> jobs_pb2.Job:
    state = STATES[n % len(STATES)]
    worker = WORKERS[n % 2].id if state != jobs_pb2.JOB_STATE_PENDING else ""
    finished = state not in (jobs_pb2.JOB_STATE_RUNNING, jobs_pb2.JOB_STATE_PENDING)
    job = jobs_pb2.Job(
        id=f"{n:08x}-1111-4222-8333-444455556666", state=state, worker_id=worker,
        attempt=0 if state == jobs_pb2.JOB_STATE_PENDING else 1,
        spec=jobs_pb2.JobSpec(name=f"build-{n}", command=["make", f"target-{n}"],
                              labels={"team": "infra" if n % 2 else "web"}, max_attempts=2),
        created_at=ago(n + 1), updated_at=ago(n),
        reason="exit code 2" if state == jobs_pb2.JOB_STATE_FAILED else "",
        submitted_by="ops",
    )
    if finished:
        job.has_exit_code = state in (jobs_pb2.JOB_STATE_SUCCEEDED, jobs_pb2.JOB_STATE_FAILED)
        job.exit_code = 2 if state == jobs_pb2.JOB_STATE_FAILED else 0
        job.finished_at.CopyFrom(ago(n))
    if job.attempt:
        job.attempts.add(attempt=1, worker_id=worker, state=state, assigned_at=ago(n + 1),
                         started_at=ago(n + 1), has_exit_code=job.has_exit_code,
                         exit_code=job.exit_code, reason=job.reason)
        if finished:
            job.attempts[0].finished_at.CopyFrom(ago(n))
    return job


JOBS = [_job(n) for n in range(24)]


def refresh() -> None:
    """Make the data again relative to now, so a test run minutes after the import draws
    the same ages."""
    _NOW[0] = time.time()
    WORKERS[:] = _workers()
    JOBS[:] = [_job(n) for n in range(24)]
OUTPUT = [(logs_pb2.LOG_STREAM_STDOUT, f"compiling unit {i}/40\n".encode()) for i in range(40)]
OUTPUT.insert(20, (logs_pb2.LOG_STREAM_STDERR, b"warning: deprecated flag -O9\n"))


class _Events:
    """A finished event stream (the call WatchEvents would return)."""

    def __init__(self, events: list[events_pb2.Event]) -> None:
        self.events = events

    async def __aiter__(self) -> AsyncGenerator[events_pb2.Event, None]:
        for event in self.events:
            yield event

    def cancel(self) -> None:
        pass


class FixedClient:
    """Answers the calls the console makes with the data above."""

    address = "hodei.example:7070"

    def open_event_watch(self, request: events_pb2.WatchEventsRequest) -> _Events:
        job_id = request.filter.job_id
        rows = [("job.created", "token:ops", 4), ("job.assigned", "server", 4),
                ("job.running", "agent", 3), ("job.failed", "agent", 2)]
        return _Events([events_pb2.Event(id=i, revision=i, type=kind, actor=actor,
                                         aggregate_type="job", aggregate_id=job_id,
                                         created_at=at(minutes))
                        for i, (kind, actor, minutes) in enumerate(rows, start=1)])

    async def who_am_i(self) -> auth_pb2.WhoAmIResponse:
        return auth_pb2.WhoAmIResponse(name="ops", role=auth_pb2.ROLE_ADMIN)

    async def count_jobs(self) -> dict[int, int]:
        """The server's count: the jobs held, and 12,000 pending ones the console is not."""
        counts: dict[int, int] = {}
        for job in JOBS:
            counts[job.state] = counts.get(job.state, 0) + 1
        counts[jobs_pb2.JOB_STATE_PENDING] = counts.get(jobs_pb2.JOB_STATE_PENDING, 0) + 12_000
        return counts

    async def get_job(self, job_id: str) -> jobs_pb2.Job:
        return next(job for job in JOBS if job.id == job_id)

    async def stream_logs(self, job_id: str, *, follow: bool, tail_lines: int = 0,
                          ) -> AsyncGenerator[logs_pb2.LogEvent, None]:
        for seq, (stream, data) in enumerate(OUTPUT, start=1):
            yield logs_pb2.LogEvent(chunk=logs_pb2.LogChunk(job_id=job_id, attempt=1, seq=seq,
                                                            stream=stream, data=data))

    async def list_providers(self) -> list[workers_pb2.ProviderStatus]:
        return [workers_pb2.ProviderStatus(name="local", type="local", min_workers=1,
                                           max_workers=4, workers=3, slots_total=12,
                                           slots_used=4, strategy="least-loaded",
                                           healthy=True)]

    async def list_secrets(self) -> list[secrets_pb2.SecretInfo]:
        return [secrets_pb2.SecretInfo(name="DB_PASSWORD", backend="hodei", size_bytes=24,
                                       updated_at=ago(60), updated_by="token:ops")]

    async def list_tokens(self, include_revoked: bool = False) -> list[auth_pb2.ApiToken]:
        return [auth_pb2.ApiToken(name="ops", role=auth_pb2.ROLE_ADMIN, created_by="operator",
                                  created_at=ago(600), last_used_at=ago(1))]

    async def list_audit(self, action: str = "", after_id: int = 0,
                         limit: int = 100) -> list[auth_pb2.AuditEntry]:
        return [auth_pb2.AuditEntry(id=1, at=ago(5), actor="token:viewer",
                                    action="/hodei.api.v1.JobService/CancelJob",
                                    target="job 00000001", allowed=False,
                                    reason="needs the operator role")]


class FixedApp(HodeiApp):
    """The console with the fixed data as its feeds' snapshots (filtered as the server
    would), and no change after them."""

    def __init__(self, **kwargs: Any) -> None:
        refresh()
        super().__init__(Settings(server="fixed:1"), **kwargs)
        client = FixedClient()

        async def open_client() -> Any:
            self.connection.client = client  # type: ignore[assignment]
            self.connection.label = "prod (hodei.example:7070)"
            return client

        self.connection.open = open_client  # type: ignore[method-assign]

    def _open_jobs(self, client: Any, revision: int) -> AsyncIterator[feeds.JobsUpdate]:
        async def snapshot() -> AsyncIterator[feeds.JobsUpdate]:
            names = self.worker_names()
            yield feeds.JobsUpdate(True, [j for j in JOBS if self.job_query.matches(j, names)],
                                   [], 1)
            await asyncio.Event().wait()

        return snapshot()

    def _open_workers(self, client: Any, revision: int) -> AsyncIterator[feeds.WorkersUpdate]:
        async def snapshot() -> AsyncIterator[feeds.WorkersUpdate]:
            yield feeds.WorkersUpdate(True, list(WORKERS), [], 1)
            await asyncio.Event().wait()

        return snapshot()
