"""The async gRPC client: every call has a timeout, every gRPC error becomes a HodeiCtlError."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, TypeVar

import grpc

from hodei_api.v1 import (
    auth_pb2,
    auth_pb2_grpc,
    events_pb2,
    events_pb2_grpc,
    jobs_pb2,
    jobs_pb2_grpc,
    logs_pb2,
    logs_pb2_grpc,
    secrets_pb2,
    secrets_pb2_grpc,
    templates_pb2_grpc,
    workers_pb2,
    workers_pb2_grpc,
)
from hodeictl.errors import Unavailable, from_rpc_error
from hodeictl.ids import parse_job_id  # noqa: F401 - where callers have long found it
from hodeictl.templatecalls import TemplateCalls

CALL_TIMEOUT = 10.0
PROBE_TIMEOUT = 2.0
MAX_PAGE_SIZE = 100
# Jobs per SubmitJobs call (the server's limit).
SUBMIT_BATCH = 10_000
# A broken log stream is resumed this many times in a row, with capped, jittered backoff.
RECONNECT_ATTEMPTS = 6
RECONNECT_BACKOFF = 0.5
RECONNECT_BACKOFF_CAP = 5.0
# Keepalive no more often than grpc servers accept by default, so a dead connection under
# a long `--follow` is noticed without the server calling it abuse.
_CHANNEL_OPTIONS = [("grpc.keepalive_time_ms", 300_000), ("grpc.keepalive_timeout_ms", 20_000)]

T = TypeVar("T")


async def _check(channel: grpc.aio.Channel) -> bool:
    """A health check, or a one-job listing where grpc_health is not installed."""
    try:
        from grpc_health.v1 import health_pb2, health_pb2_grpc
    except ImportError:  # grpcio-health-checking comes with the server extra only
        jobs = jobs_pb2_grpc.JobServiceStub(channel)
        await jobs.ListJobs(jobs_pb2.ListJobsRequest(page_size=1), timeout=PROBE_TIMEOUT)
        return True
    health = health_pb2_grpc.HealthStub(channel)
    reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=PROBE_TIMEOUT)
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


async def server_answers(address: str) -> bool:
    """Whether a Hodei server answers at `address`."""
    async with grpc.aio.insecure_channel(address) as channel:
        try:
            return await _check(channel)
        except grpc.aio.AioRpcError as error:
            # Any other status (UNIMPLEMENTED, say) still comes from a live server.
            return error.code() not in (
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.DEADLINE_EXCEEDED,
            )


def backoff(failures: int) -> float:
    """The wait before reconnecting after `failures` failures in a row: capped, jittered."""
    delay = min(RECONNECT_BACKOFF * 2 ** (failures - 1), RECONNECT_BACKOFF_CAP)
    return delay * random.uniform(0.5, 1.0)


def job_filter(
    *, states: Iterable[str] = (), labels: Mapping[str, str] | None = None,
    name_glob: str = "", id_prefix: str = "", created_after: float | None = None,
) -> jobs_pb2.JobFilter:
    """A JobFilter: `states` as typed (`running`), `created_after` a Unix time."""
    wanted = jobs_pb2.JobFilter(
        states=[jobs_pb2.JobState.Value(f"JOB_STATE_{state.upper()}") for state in states],
        labels=dict(labels or {}), name_glob=name_glob, id_prefix=id_prefix)
    if created_after is not None:
        wanted.created_after.FromNanoseconds(int(created_after * 1e9))
    return wanted


class HodeiClient(TemplateCalls):
    """`async with HodeiClient(address, token) as client: await client.get_job(job_id)`.

    Every call carries `token` (an API token) as `authorization: Bearer <token>`; with
    `ca_cert` (PEM of the CA that signed the server's certificate) the channel speaks TLS.
    """

    def __init__(
        self, address: str, token: str = "", timeout: float = CALL_TIMEOUT,
        ca_cert: bytes | None = None,
    ) -> None:
        self.address = address
        self.timeout = timeout
        self._metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {token}"),) if token else ()
        )
        if ca_cert is None:
            self._channel = grpc.aio.insecure_channel(address, options=_CHANNEL_OPTIONS)
        else:
            self._channel = grpc.aio.secure_channel(
                address, grpc.ssl_channel_credentials(ca_cert), options=_CHANNEL_OPTIONS)
        self._jobs = jobs_pb2_grpc.JobServiceStub(self._channel)
        self._logs = logs_pb2_grpc.LogServiceStub(self._channel)
        self._workers = workers_pb2_grpc.WorkerServiceStub(self._channel)
        self._tokens = auth_pb2_grpc.TokenServiceStub(self._channel)
        self._secrets = secrets_pb2_grpc.SecretServiceStub(self._channel)
        self._templates = templates_pb2_grpc.TemplateServiceStub(self._channel)
        self._schedules = templates_pb2_grpc.ScheduleServiceStub(self._channel)
        self._events = events_pb2_grpc.EventServiceStub(self._channel)

    async def __aenter__(self) -> HodeiClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._channel.close()

    async def _call(
        self, method: Callable[..., Awaitable[T]], request: Any, *, submitting: bool = False
    ) -> T:
        try:
            return await method(request, timeout=self.timeout, metadata=self._metadata)
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error, self.address, submitting=submitting) from error

    async def submit_job(
        self, spec: jobs_pb2.JobSpec, idempotency_key: str = "", correlation_id: str = ""
    ) -> jobs_pb2.SubmitJobResponse:
        """Submit a job; with an idempotency key, a retried submission returns the same job.
        Every event the job causes carries `correlation_id`."""
        request = jobs_pb2.SubmitJobRequest(spec=spec, idempotency_key=idempotency_key,
                                            correlation_id=correlation_id)
        return await self._call(self._jobs.SubmitJob, request, submitting=True)

    async def submit_jobs(
        self, entries: list[tuple[jobs_pb2.JobSpec, str]], correlation_id: str = ""
    ) -> list[jobs_pb2.SubmittedJob]:
        """Submit many jobs (spec, idempotency key), SUBMIT_BATCH to a call: their ids and
        whether each was created, in order. Each call is one transaction on the server; every
        event the jobs cause carries `correlation_id`."""
        submitted: list[jobs_pb2.SubmittedJob] = []
        for start in range(0, len(entries), SUBMIT_BATCH):
            request = jobs_pb2.SubmitJobsRequest(jobs=[
                jobs_pb2.SubmitJobRequest(spec=spec, idempotency_key=key,
                                          correlation_id=correlation_id)
                for spec, key in entries[start:start + SUBMIT_BATCH]])
            reply = await self._call(self._jobs.SubmitJobs, request, submitting=True)
            submitted.extend(reply.jobs)
        return submitted

    async def get_job(self, job_id: str) -> jobs_pb2.Job:
        """One job with its attempts."""
        return await self._call(self._jobs.GetJob, jobs_pb2.GetJobRequest(id=job_id))

    async def list_jobs(self, wanted: jobs_pb2.JobFilter, limit: int) -> list[jobs_pb2.Job]:
        """Up to `limit` jobs that match `wanted`, in the server's order (newest first),
        following page tokens."""
        jobs: list[jobs_pb2.Job] = []
        token = ""
        while len(jobs) < limit:
            request = jobs_pb2.ListJobsRequest(
                filter=wanted, page_size=min(limit - len(jobs), MAX_PAGE_SIZE),
                page_token=token)
            page = await self._call(self._jobs.ListJobs, request)
            jobs.extend(page.jobs)
            token = page.next_page_token
            if not token or not page.jobs:
                break
        return jobs[:limit]

    async def count_jobs(self) -> dict[int, int]:
        """How many jobs are in each state (a JobState value), counted by the server."""
        reply = await self._call(self._jobs.CountJobs, jobs_pb2.CountJobsRequest())
        return {count.state: count.jobs for count in reply.counts}

    async def cancel_job(self, job_id: str, reason: str = "") -> jobs_pb2.CancelJobResponse:
        """Ask the server to cancel a job; `changed` is False if it had already finished."""
        request = jobs_pb2.CancelJobRequest(id=job_id, reason=reason)
        return await self._call(self._jobs.CancelJob, request)

    async def retry_job(self, job_id: str) -> jobs_pb2.Job:
        """Run a finished job again as a new attempt."""
        reply = await self._call(self._jobs.RetryJob, jobs_pb2.RetryJobRequest(id=job_id))
        return reply.job

    async def delete_job(self, job_id: str) -> jobs_pb2.Job:
        """Delete a finished job with its attempts and output; the job as it was."""
        reply = await self._call(self._jobs.DeleteJob, jobs_pb2.DeleteJobRequest(id=job_id))
        return reply.job

    async def drain_worker(self, worker_id: str, grace_seconds: float) -> workers_pb2.Worker:
        """Stop giving a worker jobs; it finishes what it runs and exits."""
        request = workers_pb2.DrainWorkerRequest(id=worker_id, grace_seconds=grace_seconds)
        reply = await self._call(self._workers.DrainWorker, request)
        return reply.worker

    async def list_providers(self) -> list[workers_pb2.ProviderStatus]:
        """The providers of the server that answers, with their workers and health."""
        reply = await self._call(self._workers.ListProviders, workers_pb2.ListProvidersRequest())
        return list(reply.providers)

    async def server_info(self) -> workers_pb2.ServerInfo:
        """The version and the plugins of the server that answers."""
        return await self._call(self._workers.GetServerInfo, workers_pb2.GetServerInfoRequest())

    async def list_workers(self, include_gone: bool = False) -> list[workers_pb2.Worker]:
        """Workers; `include_gone` adds TERMINATED and LOST ones."""
        request = workers_pb2.ListWorkersRequest(all=include_gone)
        reply = await self._call(self._workers.ListWorkers, request)
        return list(reply.workers)

    async def create_token(
        self, name: str, role: auth_pb2.Role.ValueType, ttl_seconds: float
    ) -> auth_pb2.CreateTokenResponse:
        """A new API token; its secret is in the reply only, never shown again."""
        request = auth_pb2.CreateTokenRequest(name=name, role=role, ttl_seconds=ttl_seconds)
        return await self._call(self._tokens.CreateToken, request)

    async def revoke_token(self, name: str) -> auth_pb2.ApiToken:
        """Revoke the live API token called `name`."""
        reply = await self._call(self._tokens.RevokeToken, auth_pb2.RevokeTokenRequest(name=name))
        return reply.token

    async def list_tokens(self, include_revoked: bool = False) -> list[auth_pb2.ApiToken]:
        """API tokens (never their secrets)."""
        reply = await self._call(self._tokens.ListTokens,
                                 auth_pb2.ListTokensRequest(all=include_revoked))
        return list(reply.tokens)

    async def who_am_i(self) -> auth_pb2.WhoAmIResponse:
        """The name and role of the token this client sends."""
        return await self._call(self._tokens.WhoAmI, auth_pb2.WhoAmIRequest())

    async def list_audit(
        self, action: str = "", after_id: int = 0, limit: int = 100
    ) -> list[auth_pb2.AuditEntry]:
        """Rows of the security audit log, oldest first."""
        request = auth_pb2.ListAuditRequest(action=action, after_id=after_id, limit=limit)
        reply = await self._call(self._tokens.ListAudit, request)
        return list(reply.entries)

    async def set_secret(self, name: str, value: bytes) -> secrets_pb2.SetSecretResponse:
        """Store a secret in the server's encrypted store (replacing one of that name)."""
        request = secrets_pb2.SetSecretRequest(name=name, value=value)
        return await self._call(self._secrets.SetSecret, request)

    async def delete_secret(self, name: str) -> bool:
        """Delete a secret; False if there was none of that name."""
        request = secrets_pb2.DeleteSecretRequest(name=name)
        reply = await self._call(self._secrets.DeleteSecret, request)
        return reply.deleted

    async def list_secrets(self) -> list[secrets_pb2.SecretInfo]:
        """Names and metadata of the stored secrets (never their values)."""
        reply = await self._call(self._secrets.ListSecrets, secrets_pb2.ListSecretsRequest())
        return list(reply.secrets)

    async def stream_logs(
        self, job_id: str, *, follow: bool, after: tuple[int, int] = (0, 0),
        tail_lines: int = 0,
    ) -> AsyncGenerator[logs_pb2.LogEvent, None]:
        """The job's log events, ending with its LogEnd once it finished.

        With `tail_lines` (and no `after`) the output starts at its last `tail_lines`
        lines, cut by the server. If an established stream breaks (UNAVAILABLE, or it
        closes before LogEnd while following), it is reopened after the last (attempt,
        seq) delivered, so no chunk is lost or repeated.
        """
        position = after
        failures = 0
        connected = ended = False
        while True:
            request = logs_pb2.StreamLogsRequest(
                job_id=job_id, after_attempt=position[0], after_seq=position[1], follow=follow,
                tail_lines=tail_lines if position == (0, 0) else 0,
            )
            call = self._logs.StreamLogs(request, metadata=self._metadata)
            try:
                await call.wait_for_connection()
                connected = True
                async for event in call:
                    if ended:
                        # Nothing follows LogEnd: let the server close the stream itself.
                        continue
                    if event.HasField("chunk"):
                        chunk_position = (event.chunk.attempt, event.chunk.seq)
                        if chunk_position <= position:
                            continue
                        position, failures = chunk_position, 0
                    ended = event.HasField("end")
                    yield event
            except grpc.aio.AioRpcError as error:
                if ended:
                    return
                unavailable = error.code() == grpc.StatusCode.UNAVAILABLE
                if not (connected and unavailable) or failures >= RECONNECT_ATTEMPTS:
                    raise from_rpc_error(error, self.address) from error
            else:
                if ended or not follow:
                    return
                if failures >= RECONNECT_ATTEMPTS:
                    raise Unavailable(
                        f"the log stream of job {job_id} from {self.address} keeps ending "
                        "before the job finished"
                    )
            finally:
                call.cancel()
            failures += 1
            await asyncio.sleep(backoff(failures))

    async def read_log_page(self, job_id: str, before: tuple[int, int, int],
                            lines: int) -> list[logs_pb2.LogChunk]:
        """The last `lines` lines of output before (attempt, seq, offset) `before`."""
        request = logs_pb2.StreamLogsRequest(
            job_id=job_id, before_attempt=before[0], before_seq=before[1],
            before_offset=before[2], tail_lines=lines)
        call = self._logs.StreamLogs(request, metadata=self._metadata, timeout=self.timeout)
        try:
            return [event.chunk async for event in call if event.HasField("chunk")]
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error, self.address) from error

    def open_job_watch(self, request: jobs_pb2.WatchJobsRequest) -> Any:
        """The WatchJobs call (see hodeictl.streams, which resumes it)."""
        return self._jobs.WatchJobs(request, metadata=self._metadata)

    def open_worker_watch(self, request: workers_pb2.WatchWorkersRequest) -> Any:
        """The WatchWorkers call (see hodeictl.tui.feeds, which starts it again)."""
        return self._workers.WatchWorkers(request, metadata=self._metadata)

    def open_event_watch(self, request: events_pb2.WatchEventsRequest) -> Any:
        """The WatchEvents call (see hodeictl.streams, which resumes it)."""
        return self._events.WatchEvents(request, metadata=self._metadata)
