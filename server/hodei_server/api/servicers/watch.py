"""The live streams: WatchJobs, WatchWorkers and EventService.WatchEvents.

Each reads from its replica's hub (`hodei_server.dispatch.feeds`), which reads the database
once for every watcher; a watcher's own queries are its first read (a snapshot, a catch-up
or the history before following).
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import AsyncIterator
from typing import NamedTuple

import grpc

from hodei_api.v1 import events_pb2, events_pb2_grpc, jobs_pb2, workers_pb2
from hodei_server.api.convert import event_to_proto, job_to_proto, worker_to_proto
from hodei_server.api.status import streaming
from hodei_server.dispatch.feeds import EventHub, WorkerHub
from hodei_server.errors import FellBehind, InvalidSpec
from hodei_server.security.apitokens import Role
from hodei_server.security.authz import principal
from hodei_server.store.events import END, EventFilter, EventStore, JobFilter, Position, Row
from hodei_server.store.states import JobState
from hodei_server.validation import (
    MAX_NAME,
    MAX_STATE_FILTERS,
    parse_job_id,
    parse_worker_id,
    printable,
    timestamp,
    validate_id_prefix,
    validate_labels,
)

DEFAULT_SNAPSHOT = 500
MAX_SNAPSHOT = 10_000
# A resume that would replay more jobs than this gets a RESET and a snapshot instead.
MAX_CATCH_UP_JOBS = 10_000
DEFAULT_EVENTS = 1000
MAX_EVENTS = 100_000
HISTORY_PAGE = 1000
MAX_TYPES = 32
MAX_IDS = 1000
MAX_FIELD = 256
_TYPE = re.compile(r"[a-z][a-z0-9_]*(\.[A-Za-z0-9_]+)*(\.\*)?|[a-z][a-z0-9_.]*/[A-Za-z0-9/]+")
# Audit events are as secret as the audit log (TokenService.ListAudit).
AUDIT_ROLE = Role.ADMIN

JobKind = jobs_pb2.WatchJobsResponse.Kind
WorkerKind = workers_pb2.WatchWorkersResponse.Kind


CORRELATION_HEADER = "x-correlation-id"
MAX_CORRELATION_ID = 128


def correlation_id(requested: str, context: grpc.aio.ServicerContext) -> str:
    """The correlation id a call asks for: the request's, else its x-correlation-id
    metadata ("" for none), checked."""
    value = requested
    if not value:
        for key, item in context.invocation_metadata() or ():
            if str(key).lower() == CORRELATION_HEADER:
                value = str(item)
                break
    printable(value, "correlation_id", MAX_CORRELATION_ID)
    return value


def job_filter(request: jobs_pb2.JobFilter) -> JobFilter:
    """The filter of a WatchJobs or ListJobs request, checked (InvalidSpec says what to
    fix): the one place either is validated."""
    if len(request.states) > MAX_STATE_FILTERS:
        raise InvalidSpec(f"filter.states: at most {MAX_STATE_FILTERS}")
    try:
        states = frozenset(JobState.from_proto(s).value for s in request.states)
    except ValueError as exc:
        raise InvalidSpec(f"filter.states: {exc}") from None
    validate_labels(request.labels, "filter.labels")
    printable(request.name, "filter.name", MAX_NAME)
    worker = parse_worker_id(request.worker_id) if request.worker_id else None
    if len(request.ids) > MAX_IDS:
        raise InvalidSpec(f"filter.ids: at most {MAX_IDS}")
    ids = frozenset(parse_job_id(job_id) for job_id in request.ids)
    validate_id_prefix(request.id_prefix, "filter.id_prefix")
    printable(request.name_glob, "filter.name_glob", MAX_NAME)
    created_after = None
    if request.HasField("created_after"):
        created_after = timestamp(request.created_after, "filter.created_after")
    return JobFilter(states, dict(request.labels), request.name, worker, ids,
                     request.id_prefix, request.name_glob, created_after)


def event_filter(request: events_pb2.EventFilter, audit: bool) -> EventFilter:
    """The filter of a WatchEvents request, checked (InvalidSpec says what to fix)."""
    job_id = str(parse_job_id(request.job_id)) if request.job_id else None
    worker_id = str(parse_worker_id(request.worker_id)) if request.worker_id else None
    if len(request.types) > MAX_TYPES:
        raise InvalidSpec(f"filter.types: at most {MAX_TYPES}")
    types, prefixes = [], []
    for kind in request.types:
        printable(kind, "filter.types", MAX_FIELD)
        if not _TYPE.fullmatch(kind):
            raise InvalidSpec(f"filter.types: {kind!r} is not an event type (e.g. job, "
                              "job.failed, worker.*, audit)")
        if kind.endswith(".*"):
            prefixes.append(kind[:-1])
        elif "." in kind:
            types.append(kind)
        else:
            prefixes.append(kind + ".")
    printable(request.actor, "filter.actor", MAX_FIELD)
    printable(request.correlation_id, "filter.correlation_id", MAX_FIELD)
    since = request.since.ToDatetime(dt.UTC) if request.HasField("since") else None
    return EventFilter(job_id, worker_id, tuple(types), tuple(prefixes),
                       request.actor or None, request.correlation_id or None, since, audit)


async def watch_jobs(
    hub: EventHub, store: EventStore, request: jobs_pb2.WatchJobsRequest
) -> AsyncIterator[jobs_pb2.WatchJobsResponse]:
    """The stream of WatchJobs (see jobs.proto)."""
    wanted = job_filter(request.filter)
    if not 0 <= request.snapshot_limit <= MAX_SNAPSHOT:
        raise InvalidSpec(f"snapshot_limit must be between 0 and {MAX_SNAPSHOT}")
    if request.after_revision < 0:
        raise InvalidSpec("after_revision must be >= 0")
    limit = request.snapshot_limit or DEFAULT_SNAPSHOT
    resume = request.after_revision
    # The ids the watcher holds, when known (after a snapshot on this stream).
    held: set[str] | None = None
    while True:
        first_read = functools.partial(_first_jobs_read, store, wanted, limit, resume)
        mailbox, (rows, snapshot, more, revision) = await hub.join(first_read, jobs=True)
        try:
            if snapshot:
                if resume or held is not None:
                    yield jobs_pb2.WatchJobsResponse(kind=JobKind.KIND_RESET, revision=revision)
                held = set()
                for row in rows:
                    held.add(str(row["id"]))
                    yield jobs_pb2.WatchJobsResponse(kind=JobKind.KIND_SNAPSHOT,
                                                     job=job_to_proto(row), revision=revision)
                yield jobs_pb2.WatchJobsResponse(kind=JobKind.KIND_SYNCED, revision=revision,
                                                 more=more)
            else:
                for row in rows:
                    change = _job_change(str(row["id"]), None if row.get("gone") else row,
                                         wanted, held, revision)
                    if change is not None:
                        yield change
            resume = 0
            while True:
                batches = await mailbox.take()
                if mailbox.behind:
                    break  # start again from the latest state
                for batch in batches:
                    for job_id, job in batch.jobs.items():
                        change = _job_change(job_id, job, wanted, held, batch.end.revision)
                        if change is not None:
                            yield change
        finally:
            hub.leave(mailbox)


class _FirstRead(NamedTuple):
    """What a job watcher reads when it joins: a snapshot or the changes since it left."""

    rows: list[Row]
    snapshot: bool
    # The snapshot was cut at its limit.
    more: bool
    revision: int


async def _first_jobs_read(
    store: EventStore, wanted: JobFilter, limit: int, resume: int, position: Position
) -> _FirstRead:
    """A job watcher's first read at `position`: the jobs changed since `resume`, or (with
    none, or too many) a snapshot."""
    if resume:
        ids = await store.jobs_changed_since(resume, position, MAX_CATCH_UP_JOBS + 1)
        if len(ids) <= MAX_CATCH_UP_JOBS:
            found = await store.jobs_by_ids(ids)
            return _FirstRead([found.get(i) or {"id": i, "gone": True} for i in ids],
                              False, False, position.revision)
    rows = await store.job_snapshot(wanted, limit + 1)
    return _FirstRead(rows[:limit], True, len(rows) > limit, position.revision)


def _job_change(
    job_id: str, row: Row | None, wanted: JobFilter, held: set[str] | None, revision: int
) -> jobs_pb2.WatchJobsResponse | None:
    """The message for one job's change; None when the watcher needs none. `held` None:
    which jobs the watcher holds is unknown (it resumed), so every job that does not match
    is REMOVED."""
    if row is not None and wanted.matches(row):
        if held is not None:
            held.add(job_id)
        return jobs_pb2.WatchJobsResponse(kind=JobKind.KIND_UPSERT, job=job_to_proto(row),
                                          revision=revision)
    if held is None or job_id in held:
        if held is not None:
            held.discard(job_id)
        return jobs_pb2.WatchJobsResponse(kind=JobKind.KIND_REMOVED,
                                          job=jobs_pb2.Job(id=job_id), revision=revision)
    return None


async def watch_workers(
    hub: WorkerHub, request: workers_pb2.WatchWorkersRequest
) -> AsyncIterator[workers_pb2.WatchWorkersResponse]:
    """The stream of WatchWorkers (see workers.proto)."""
    def shown(row: Row | None) -> bool:
        return row is not None and (request.all or row["state"] not in ("TERMINATED", "LOST"))

    first = True
    while True:
        mailbox, rows = await hub.join()
        try:
            if not first:
                yield workers_pb2.WatchWorkersResponse(kind=WorkerKind.KIND_RESET)
            first = False
            held: set[str] = set()
            for row in rows:
                if shown(row):
                    held.add(str(row["id"]))
                    yield workers_pb2.WatchWorkersResponse(kind=WorkerKind.KIND_SNAPSHOT,
                                                           worker=worker_to_proto(row))
            yield workers_pb2.WatchWorkersResponse(kind=WorkerKind.KIND_SYNCED)
            while True:
                changes = await mailbox.take()
                if mailbox.behind:
                    break
                for change in changes:
                    if shown(change.row):
                        assert change.row is not None
                        held.add(change.worker_id)
                        yield workers_pb2.WatchWorkersResponse(
                            kind=WorkerKind.KIND_UPSERT, worker=worker_to_proto(change.row))
                    elif change.worker_id in held:
                        held.discard(change.worker_id)
                        yield workers_pb2.WatchWorkersResponse(
                            kind=WorkerKind.KIND_REMOVED,
                            worker=workers_pb2.Worker(id=change.worker_id))
        finally:
            hub.leave(mailbox)


class EventServicer(events_pb2_grpc.EventServiceServicer):
    def __init__(self, store: EventStore, hub: EventHub) -> None:
        self.store = store
        self.hub = hub

    @streaming
    async def WatchEvents(
        self, request: events_pb2.WatchEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[events_pb2.Event]:
        wanted = event_filter(request.filter, audit=principal().role >= AUDIT_ROLE)
        if not 0 <= request.limit <= MAX_EVENTS:
            raise InvalidSpec(f"limit must be between 0 and {MAX_EVENTS}")
        if request.after_revision < 0 or request.after_id < 0:
            raise InvalidSpec("after_revision and after_id must be >= 0")
        after = Position(request.after_revision, request.after_id)
        resumed = after != (0, 0) or wanted.since is not None
        limit = request.limit or DEFAULT_EVENTS
        if not request.follow:
            if resumed:
                for row in await self.store.matching(wanted, after, Position(END, END), limit):
                    yield event_to_proto(row)
            else:
                for row in await self.store.latest_matching(wanted, Position(END, END), limit):
                    yield event_to_proto(row)
            return

        async def first_read(position: Position) -> Position:
            return position

        mailbox, until = await self.hub.join(first_read, jobs=False)
        try:
            cursor = after
            if resumed:
                while True:
                    rows = await self.store.matching(wanted, cursor, until, HISTORY_PAGE)
                    for row in rows:
                        cursor = Position(row["revision"], row["id"])
                        yield event_to_proto(row)
                    if len(rows) < HISTORY_PAGE:
                        break
            else:
                for row in await self.store.latest_matching(wanted, until, limit):
                    yield event_to_proto(row)
            cursor = max(cursor, until)
            while True:
                batches = await mailbox.take()
                if mailbox.behind:
                    raise FellBehind(
                        f"this watcher read too slowly and was cut off; resume after "
                        f"revision {cursor.revision}, id {cursor.id}")
                for batch in batches:
                    for row in batch.events:
                        position = Position(row["revision"], row["id"])
                        if position > cursor and wanted.matches(row):
                            yield event_to_proto(row)
                    cursor = max(cursor, batch.end)
        finally:
            self.hub.leave(mailbox)
