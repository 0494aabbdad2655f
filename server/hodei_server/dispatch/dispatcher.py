"""Event-driven dispatch: pending jobs onto this replica's connected agents."""

from __future__ import annotations

import asyncio
import logging
import uuid

from hodei_api.v1 import agent_pb2, jobs_pb2
from hodei_plugins.schedulers import Scheduler
from hodei_server import telemetry
from hodei_server.dispatch.placement import place, place_least_loaded, place_new
from hodei_server.dispatch.registry import AgentRegistry
from hodei_server.dispatch.session import AgentSession
from hodei_server.dispatch.supervise import retry_delay
from hodei_server.security.secretstore import SecretResolver, SecretUnavailable
from hodei_server.store.jobs import Assignment, Claimed, JobStore, Row
from hodei_server.store.states import JobState

log = logging.getLogger(__name__)


class Dispatcher:
    """Wakes on NOTIFY, on a freed slot or a new agent (and on a resync timer)."""

    def __init__(
        self, jobs: JobStore, registry: AgentRegistry, server_id: str, resync_interval: float,
        scheduler: Scheduler | None = None, secrets: SecretResolver | None = None,
    ) -> None:
        self.jobs = jobs
        self.secrets = secrets
        self.registry = registry
        self.actor = f"server:{server_id}"
        self.resync_interval = resync_interval
        self.scheduler = scheduler
        self._wake = asyncio.Event()
        # Held by a claim round, and by a submission placing its job: each chooses agents
        # by their free slots before its statement and counts the slots it took after it.
        self._placing = asyncio.Lock()

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        failures = 0
        while not stop.is_set():
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.resync_interval)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                while not stop.is_set() and await self.dispatch_once():
                    pass  # a full round: more may be waiting
                failures = 0
            except Exception as exc:  # the database may be down: retry, never die
                telemetry.DISPATCH_ERRORS.inc()
                failures += 1
                delay = retry_delay(failures)
                log.warning("dispatch failed (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)

    async def submit(
        self, spec: jobs_pb2.JobSpec, idempotency_key: str, actor: str, submitted_by: str = "",
        correlation_id: str = "",
    ) -> tuple[Row, bool]:
        """Store a plain job (row, created). When no job waits and an agent of this replica
        has room for it, the job is stored assigned to that agent and sent to it at once: one
        statement, no claim round. Otherwise it is stored PENDING and the dispatchers woken.

        A claim round under way here (it holds the agents' slots) sends the job the usual
        way rather than making the submission wait for it."""
        stored: tuple[Row, bool] | None = None
        # Named now so that a strategy's log lines name the job as it will be stored.
        job_id = uuid.uuid4()
        if not self._placing.locked():
            async with self._placing:
                sessions = self.registry.accepting()
                worker = (place_new(job_id, spec, sessions, self.scheduler) if sessions
                          else None)
                if worker is not None:
                    stored = await self.jobs.submit(
                        spec, idempotency_key, actor, submitted_by=submitted_by,
                        correlation_id=correlation_id, worker_id=worker, job_id=job_id)
                    row, created = stored
                    if created and row["state"] == JobState.ASSIGNED.value:
                        telemetry.PLACED_AT_SUBMISSION.inc()
                        await self._deliver(Assignment(row["id"], row["attempt"],
                                                       row["worker_id"], row["spec"]))
                        return stored
        if stored is None:
            stored = await self.jobs.submit(spec, idempotency_key, actor,
                                            submitted_by=submitted_by,
                                            correlation_id=correlation_id, job_id=job_id)
        if stored[1]:
            self.wake()
        return stored

    async def dispatch_once(self) -> bool:
        """One claim round; True when another round may place more.

        A round that claimed fewer jobs than there were free slots saw every pending job
        that fits: running another at once would only repeat the query (a new job's NOTIFY,
        a freed slot or a new agent wakes the dispatcher again)."""
        async with self._placing:
            return await self._claim_round()

    async def _claim_round(self) -> bool:
        sessions = self.registry.accepting()
        if not sessions:
            return False
        telemetry.DISPATCH_ROUNDS.inc()
        limit = sum(s.free_slots for s in sessions)
        claimed_count = 0

        def choose(claimed: list[Claimed]) -> list[tuple[uuid.UUID, uuid.UUID]]:
            nonlocal claimed_count
            claimed_count = len(claimed)
            if self.scheduler is not None:
                return place(claimed, sessions, self.scheduler)
            return place_least_loaded(claimed, sessions)

        assignments = await self.jobs.claim_and_assign(
            self.registry.candidates(), limit, choose, self.actor
        )
        for assignment in assignments:
            await self._deliver(assignment)
        return bool(assignments) and claimed_count == limit

    async def _deliver(self, assignment: Assignment) -> None:
        session = self.registry.get(assignment.worker_id)
        if session is None:
            # The stream closed meanwhile: the agent's Hello on reconnect, or the heartbeat
            # TTL, puts the job back.
            log.warning("worker %s left before job %s was sent", assignment.worker_id,
                        assignment.job_id)
            return
        await self.send(session, assignment)

    async def send(self, session: AgentSession, assignment: Assignment) -> None:
        """Send an assigned attempt to its agent, with its secrets resolved now."""
        spec = jobs_pb2.JobSpec.FromString(assignment.spec_bytes)
        values = await self._secret_values(assignment, spec)
        if values is None:
            return
        session.run_job(assignment.job_id, assignment.attempt, spec, values)
        if log.isEnabledFor(logging.DEBUG):
            # Routine, once per job: at debug level (the job.assigned event records it).
            log.debug("job %s attempt %d -> worker %s", assignment.job_id, assignment.attempt,
                      assignment.worker_id,
                      extra={"job": str(assignment.job_id), "attempt": assignment.attempt,
                             "worker": str(assignment.worker_id)})

    async def _secret_values(
        self, assignment: Assignment, spec: jobs_pb2.JobSpec
    ) -> list[agent_pb2.SecretValue] | None:
        """The attempt's secrets, resolved now; None if they can't be: the attempt failed (a
        secret is missing or unreadable) or handed back unstarted (the audit could not be
        written, say), never left assigned without its RunJob."""
        if not spec.secrets:
            return []
        outcome, unstarted = JobState.FAILED, False
        try:
            if self.secrets is None:
                raise SecretUnavailable("this server has no secret backends")
            return await self.secrets.resolve(
                assignment.job_id, assignment.attempt, assignment.worker_id, spec.secrets
            )
        except SecretUnavailable as exc:
            reason = str(exc)
        except Exception as exc:  # the database, mostly: try the attempt again later
            outcome, unstarted = JobState.LOST, True
            reason = f"its secrets could not be resolved ({type(exc).__name__}); retrying"
        log.warning("job %s attempt %d not started: %s", assignment.job_id, assignment.attempt,
                    reason)
        try:
            async with self.jobs.pool.transaction() as conn:
                await self.jobs.finish(conn, assignment.job_id, assignment.attempt,
                                       assignment.worker_id, outcome, None, reason, self.actor,
                                       unstarted=unstarted)
        except Exception as exc:
            log.warning("job %s attempt %d: could not record that (%s); the worker's next "
                        "reconnection or loss hands it back", assignment.job_id,
                        assignment.attempt, type(exc).__name__)
        return None
