"""JobService: submit, get, list, cancel."""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc

from hodei_api.v1 import jobs_pb2, jobs_pb2_grpc
from hodei_server.api.convert import job_to_proto
from hodei_server.api.interceptors import refuse
from hodei_server.api.servicers.watch import correlation_id, job_filter, watch_jobs
from hodei_server.api.status import streaming, unary
from hodei_server.dispatch.dispatcher import Dispatcher
from hodei_server.dispatch.feeds import EventHub
from hodei_server.dispatch.placement import check_strategy_label
from hodei_server.dispatch.registry import AgentRegistry
from hodei_server.errors import Conflict, InvalidSpec
from hodei_server.security.authz import Authorizer, Refused, principal
from hodei_server.security.secretstore import SecretResolver
from hodei_server.store.events import EventStore
from hodei_server.store.flows import FlowStore, needs_flow
from hodei_server.store.jobs import JobStore, decode_page_token, encode_page_token
from hodei_server.store.states import JobState
from hodei_server.validation import (
    parse_job_id,
    validate_idempotency_key,
    validate_list_jobs,
    validate_reason,
    validate_spec,
)

log = logging.getLogger(__name__)

MAX_PAGE_SIZE = 1000
# Jobs one SubmitJobs call may carry.
MAX_BATCH_JOBS = 10_000
DEFAULT_PAGE_SIZE = 100
# A page stops growing past this many bytes, so it fits any client's default 4 MiB limit.
MAX_PAGE_BYTES = 3 * 1024 * 1024


_SERVICE = "/hodei.api.v1.JobService/"


class JobServicer(jobs_pb2_grpc.JobServiceServicer):
    def __init__(
        self, jobs: JobStore, registry: AgentRegistry, dispatcher: Dispatcher,
        authorizer: Authorizer, server_id: str = "", secrets: SecretResolver | None = None,
        flows: FlowStore | None = None, feed: EventHub | None = None,
    ) -> None:
        self.jobs = jobs
        self.events = EventStore(jobs.pool)
        self.feed = feed
        # Jobs that wait, fan out or are cleaned up after a while; plain ones take the
        # queue's fast path.
        self.flows = flows or FlowStore(jobs.pool, jobs)
        self.registry = registry
        self.dispatcher = dispatcher
        self.authorizer = authorizer
        # This replica, named in the signals it publishes (see store.signals.CancelAttempt).
        self.server_id = server_id
        self.secrets = secrets

    async def _require_owner(
        self, method: str, job_id: uuid.UUID, context: grpc.aio.ServicerContext
    ) -> None:
        row, _ = await self.jobs.get(job_id)  # NOT_FOUND first
        try:
            self.authorizer.check_owner(_SERVICE + method, row["submitted_by"], str(job_id))
        except Refused as refusal:
            await refuse(self.authorizer, context, _SERVICE + method, refusal, str(job_id))

    @unary
    async def SubmitJob(
        self, request: jobs_pb2.SubmitJobRequest, context: grpc.aio.ServicerContext
    ) -> jobs_pb2.SubmitJobResponse:
        validate_spec(request.spec)
        validate_idempotency_key(request.idempotency_key)
        check_strategy_label(request.spec.labels)
        who = principal()
        if request.spec.secrets:
            if self.secrets is None:
                raise InvalidSpec("this server has no secret backends")
            await self.secrets.check_exist([ref.name for ref in request.spec.secrets])
        # A plain job goes through the dispatcher, which starts it at once when it can
        # (and wakes itself when it can't).
        flow = needs_flow(request.spec)
        row, created = await (self.flows if flow else self.dispatcher).submit(
            request.spec, request.idempotency_key, who.actor, submitted_by=who.name,
            correlation_id=correlation_id(request.correlation_id, context),
        )
        if created:
            if flow:
                self.dispatcher.wake()
            log.info("job %s submitted", row["id"], extra={
                "job": str(row["id"]), "correlation_id": row.get("correlation_id") or ""})
        return jobs_pb2.SubmitJobResponse(job=job_to_proto(row), created=created)

    @streaming
    async def WatchJobs(
        self, request: jobs_pb2.WatchJobsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[jobs_pb2.WatchJobsResponse]:
        if self.feed is None:
            raise Conflict("this server does not watch jobs")
        async for message in watch_jobs(self.feed, self.events, request):
            yield message

    @unary
    async def SubmitJobs(
        self, request: jobs_pb2.SubmitJobsRequest, context: grpc.aio.ServicerContext
    ) -> jobs_pb2.SubmitJobsResponse:
        if not request.jobs:
            raise InvalidSpec("no jobs to submit: give at least one")
        if len(request.jobs) > MAX_BATCH_JOBS:
            raise InvalidSpec(f"{len(request.jobs)} jobs in one call; at most {MAX_BATCH_JOBS} "
                              "are accepted (split them over several calls)")
        secret_names: dict[str, int] = {}
        correlations: list[str] = []
        for index, entry in enumerate(request.jobs):
            try:
                validate_spec(entry.spec)
                validate_idempotency_key(entry.idempotency_key)
                correlations.append(correlation_id(entry.correlation_id, context))
            except InvalidSpec as exc:
                raise InvalidSpec(f"jobs[{index}]: {exc.message}") from None
            for ref in entry.spec.secrets:
                secret_names.setdefault(ref.name, index)
        if secret_names:
            if self.secrets is None:
                raise InvalidSpec("this server has no secret backends")
            for name, index in secret_names.items():
                try:
                    await self.secrets.check_exist([name])
                except InvalidSpec as exc:
                    raise InvalidSpec(f"jobs[{index}]: {exc.message}") from None
        who = principal()
        results = await self.flows.submit_many(
            [(entry.spec, entry.idempotency_key, correlation)
             for entry, correlation in zip(request.jobs, correlations, strict=True)],
            who.actor, submitted_by=who.name,
        )
        created = sum(1 for _, new in results if new)
        if created:
            self.dispatcher.wake()
            log.info("%d jobs submitted in one call", created)
        return jobs_pb2.SubmitJobsResponse(jobs=[
            jobs_pb2.SubmittedJob(id=str(job_id), created=new) for job_id, new in results])

    @unary
    async def GetJob(
        self, request: jobs_pb2.GetJobRequest, context: grpc.aio.ServicerContext
    ) -> jobs_pb2.Job:
        row, attempts = await self.jobs.get(parse_job_id(request.id))
        job = job_to_proto(row, attempts)
        if row["completions"]:
            counts = await self.flows.index_counts(row["id"])
            job.indexes.CopyFrom(jobs_pb2.IndexCounts(**counts))
        return job

    @unary
    async def ListJobs(
        self, request: jobs_pb2.ListJobsRequest, context: grpc.aio.ServicerContext
    ) -> jobs_pb2.ListJobsResponse:
        validate_list_jobs(request)
        size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        states = [JobState.from_proto(s) for s in request.states if s]
        rows, token = await self._list_matching(request, states, size)
        reply = jobs_pb2.ListJobsResponse()
        total = 0
        for index, row in enumerate(rows):
            job = job_to_proto(row)
            total += job.ByteSize()
            if index and total > MAX_PAGE_BYTES:
                last = rows[index - 1]
                token = encode_page_token(last["created_at"], last["id"])
                break
            reply.jobs.append(job)
        reply.next_page_token = token
        return reply

    async def _list_matching(
        self, request: jobs_pb2.ListJobsRequest, states: list[JobState], size: int
    ) -> tuple[list[dict[str, Any]], str]:
        wanted = job_filter(request.filter)
        if states:
            listed = frozenset(s.value for s in states)
            both = wanted.states & listed if wanted.states else listed
            if not both:
                return [], ""  # no state is in both lists
            wanted = dataclasses.replace(wanted, states=both)
        after = decode_page_token(request.page_token) if request.page_token else None
        rows = await self.events.job_page(wanted, after, size + 1)
        token = ""
        if len(rows) > size:
            rows = rows[:size]
            token = encode_page_token(rows[-1]["created_at"], rows[-1]["id"])
        return rows, token

    @unary
    async def CountJobs(
        self, request: jobs_pb2.CountJobsRequest, context: grpc.aio.ServicerContext
    ) -> jobs_pb2.CountJobsResponse:
        counts = await self.jobs.count_by_state()
        return jobs_pb2.CountJobsResponse(counts=[
            jobs_pb2.StateCount(state=JobState(state).to_proto(), jobs=jobs)
            for state, jobs in sorted(counts.items())])

    @unary
    async def CancelJob(
        self, request: jobs_pb2.CancelJobRequest, context: grpc.aio.ServicerContext
    ) -> jobs_pb2.CancelJobResponse:
        job_id = parse_job_id(request.id)
        validate_reason(request.reason)
        await self._require_owner("CancelJob", job_id, context)
        reason = request.reason or "cancelled by user"
        changed, signals = await self.jobs.cancel(job_id, reason, principal().actor,
                                                  self.server_id)
        for signal in signals:
            self.registry.deliver(signal)  # if its stream is here; other replicas hear it
        row, attempts = await self.jobs.get(job_id)
        return jobs_pb2.CancelJobResponse(job=job_to_proto(row, attempts), changed=changed)


    @unary
    async def DeleteJob(
        self, request: jobs_pb2.DeleteJobRequest, context: grpc.aio.ServicerContext
    ) -> jobs_pb2.DeleteJobResponse:
        job_id = parse_job_id(request.id)
        await self._require_owner("DeleteJob", job_id, context)
        row, attempts = await self.jobs.get(job_id)
        if not await self.flows.delete_finished(job_id, principal().actor):
            state = JobState(row["state"]).value
            raise Conflict(f"job {job_id} is {state}: only a finished job can be deleted "
                           "(cancel it first), and not while a job waiting on it needs it")
        log.info("job %s deleted", job_id)
        return jobs_pb2.DeleteJobResponse(job=job_to_proto(row, attempts))

    @unary
    async def RetryJob(
        self, request: jobs_pb2.RetryJobRequest, context: grpc.aio.ServicerContext
    ) -> jobs_pb2.RetryJobResponse:
        job_id = parse_job_id(request.id)
        await self._require_owner("RetryJob", job_id, context)
        await self.jobs.retry(job_id, principal().actor)
        self.dispatcher.wake()
        row, attempts = await self.jobs.get(job_id)
        return jobs_pb2.RetryJobResponse(job=job_to_proto(row, attempts))

