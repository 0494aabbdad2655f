"""The seam between the server's streams and the screens.

Each feed is an async iterator of updates: first a snapshot (`reset=True`), then changes
as the server sends them (WatchJobs, WatchWorkers, WatchEvents: fed by the server's NOTIFY
reader, never a re-polled list). A feed raises a HodeiCtlError when its stream breaks;
the app then shows the banner, reconnects with backoff and resumes from the revision the
last update reached (a resumed job watch sends only the changes since).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import NamedTuple

import grpc

from hodei_api.v1 import events_pb2, jobs_pb2, workers_pb2
from hodeictl.client import HodeiClient
from hodeictl.errors import HodeiCtlError, from_rpc_error
from hodeictl.tui.query import JobQuery

# How many of the newest matching jobs a snapshot holds (the server filters the rest).
SNAPSHOT_JOBS = 500
_JOBS = jobs_pb2.WatchJobsResponse
_WORKERS = workers_pb2.WatchWorkersResponse


class JobsUpdate(NamedTuple):
    """Jobs to store (all of them when `reset`), ids to drop, and the revision to resume
    from (0 until the snapshot is complete)."""

    reset: bool
    jobs: list[jobs_pb2.Job]
    removed: list[str]
    revision: int
    more: bool = False


class WorkersUpdate(NamedTuple):
    reset: bool
    workers: list[workers_pb2.Worker]
    removed: list[str]
    revision: int


def job_filter(query: JobQuery, worker_names: Mapping[str, str]) -> jobs_pb2.JobFilter:
    """The part of `query` the server can apply: states, labels, a name, a worker.

    The server takes one name substring and one worker id; the first word and worker go
    to it, and the app matches the rest of the words on what it sends.
    """
    wanted = jobs_pb2.JobFilter(states=sorted(query.states), labels=dict(query.labels))
    if query.words:
        wanted.name = query.words[0]
    if query.workers:
        name = query.workers[0]
        by_name = [wid for wid, wname in worker_names.items() if wname == name]
        wanted.worker_id = by_name[0] if len(by_name) == 1 else name
    return wanted


def _broken(error: grpc.aio.AioRpcError, client: HodeiClient) -> HodeiCtlError:
    return from_rpc_error(error, client.address)


async def watch_jobs(client: HodeiClient, wanted: jobs_pb2.JobFilter,
                     after_revision: int = 0) -> AsyncIterator[JobsUpdate]:
    """The jobs matching `wanted`: a snapshot (unless resuming), then every change."""
    request = jobs_pb2.WatchJobsRequest(filter=wanted, snapshot_limit=SNAPSHOT_JOBS,
                                        after_revision=after_revision)
    call = client.open_job_watch(request)
    synced = after_revision > 0
    revision = after_revision
    snapshot: list[jobs_pb2.Job] = []
    try:
        async for message in call:
            kind = message.kind
            if kind == _JOBS.KIND_RESET:
                synced, snapshot = False, []
            elif kind == _JOBS.KIND_SNAPSHOT:
                snapshot.append(message.job)
            elif kind == _JOBS.KIND_SYNCED:
                synced, revision = True, max(revision, message.revision)
                yield JobsUpdate(True, snapshot, [], revision, message.more)
                snapshot = []
            elif synced:
                revision = max(revision, message.revision)
                if kind == _JOBS.KIND_UPSERT:
                    yield JobsUpdate(False, [message.job], [], revision)
                elif kind == _JOBS.KIND_REMOVED:
                    yield JobsUpdate(False, [], [message.job.id], revision)
    except grpc.aio.AioRpcError as error:
        raise _broken(error, client) from error
    finally:
        call.cancel()


async def watch_workers(client: HodeiClient,
                        after_revision: int = 0) -> AsyncIterator[WorkersUpdate]:
    """Every live worker: a snapshot, then every change (a new snapshot on reconnect)."""
    call = client.open_worker_watch(workers_pb2.WatchWorkersRequest())
    snapshot: list[workers_pb2.Worker] = []
    synced = False
    try:
        async for message in call:
            kind = message.kind
            if kind == _WORKERS.KIND_RESET:
                synced, snapshot = False, []
            elif kind == _WORKERS.KIND_SNAPSHOT:
                snapshot.append(message.worker)
            elif kind == _WORKERS.KIND_SYNCED:
                synced = True
                yield WorkersUpdate(True, snapshot, [], 0)
                snapshot = []
            elif synced and kind == _WORKERS.KIND_UPSERT:
                yield WorkersUpdate(False, [message.worker], [], 0)
            elif synced and kind == _WORKERS.KIND_REMOVED:
                yield WorkersUpdate(False, [], [message.worker.id], 0)
    except grpc.aio.AioRpcError as error:
        raise _broken(error, client) from error
    finally:
        call.cancel()


async def job_events(client: HodeiClient, job_id: str) -> AsyncIterator[events_pb2.Event]:
    """A job's events, oldest first, then live; resumed after the last one if it breaks."""
    from hodeictl import streams

    wanted = events_pb2.EventFilter(job_id=job_id)
    async with contextlib.aclosing(streams.watch_events(client, wanted, follow=True)) as events:
        async for event in events:
            yield event
