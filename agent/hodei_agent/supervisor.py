"""Starting, tracking and cancelling the agent's job attempts."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from hodei_agent.batcher import DEFAULT_LIMITS, BatchLimits
from hodei_agent.outbox import JobKey, JobRecord, Outbox
from hodei_agent.runner import JobResult, JobRunner
from hodei_api.v1 import agent_pb2, jobs_pb2

logger = logging.getLogger(__name__)

DRAINING_REASON = "agent is draining"


@dataclass(frozen=True)
class _Running:
    runner: JobRunner
    task: asyncio.Task[None]


class JobSupervisor:
    """Runs each `RunJob` as a named task; results and output go to the outbox."""

    def __init__(
        self,
        outbox: Outbox,
        *,
        slots: int,
        worker_id: str = "",
        limits: BatchLimits = DEFAULT_LIMITS,
    ) -> None:
        self._outbox = outbox
        self._slots = slots
        self.worker_id = worker_id
        self._limits = limits
        self._jobs: dict[JobKey, _Running] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self.draining = False

    @property
    def running(self) -> int:
        """Job attempts whose process has not finished yet."""
        return len(self._jobs)

    def run_job(self, command: agent_pb2.RunJob) -> None:
        """Start a job attempt; during a drain, hand it back to the server instead."""
        key = (command.job_id, command.attempt)
        if key in self._jobs or key in self._outbox:
            logger.info("job=%s attempt=%d: already running or finished; RunJob ignored", *key)
            return
        record = self._outbox.open(*key)
        if self.draining:
            logger.info("job=%s attempt=%d: refused, %s", *key, DRAINING_REASON)
            record.finish(jobs_pb2.JOB_STATE_LOST, reason=DRAINING_REASON)
            return
        if len(self._jobs) >= self._slots:
            logger.warning(
                "job=%s attempt=%d: all %d slots are busy; running it anyway", *key, self._slots
            )
        runner = JobRunner(
            command.job_id,
            command.attempt,
            command.spec,
            worker_id=self.worker_id,
            sink=record,
            limits=self._limits,
            secrets=command.secrets,
        )
        task = asyncio.create_task(
            self._run(runner, record), name=f"job-{command.job_id}-{command.attempt}"
        )
        self._jobs[key] = _Running(runner, task)
        self._idle.clear()

    async def _run(self, runner: JobRunner, record: JobRecord) -> None:
        try:
            try:
                result = await runner.run(record.accept)
            except Exception as exc:
                # A bug of the agent, not of the job: report it rather than leave the job hanging.
                logger.exception("job=%s attempt=%d: agent error", *record.key)
                result = JobResult(jobs_pb2.JOB_STATE_FAILED, reason=f"agent error: {exc!r}")
            record.finish(result.outcome, exit_code=result.exit_code,
                          reason=runner.redact(result.reason))
        finally:
            del self._jobs[record.key]
            if not self._jobs:
                self._idle.set()

    def cancel_job(self, command: agent_pb2.CancelJobCommand) -> None:
        """Cancel a running attempt (no-op once it finished)."""
        key = (command.job_id, command.attempt)
        running = self._jobs.get(key)
        if running is None:
            level = logging.DEBUG if key in self._outbox else logging.WARNING
            logger.log(level, "job=%s attempt=%d: not running; cancel ignored", *key)
            return
        logger.info("job=%s attempt=%d: cancel requested (%s)", *key, command.reason or "-")
        running.runner.cancel(command.reason, command.grace_seconds)

    def cancel_all(self, reason: str, grace_seconds: float = 0.0) -> None:
        """Cancel every running attempt."""
        for running in self._jobs.values():
            running.runner.cancel(reason, grace_seconds)

    def fence_all(self, reason: str, grace_seconds: float) -> None:
        """Stop every running attempt as LOST (the lease ran out)."""
        for running in self._jobs.values():
            running.runner.fence(reason, grace_seconds)

    async def wait_idle(self) -> None:
        """Return once no attempt is running."""
        await self._idle.wait()

    async def abort(self) -> None:
        """Stop every attempt now, killing its process group (the agent is exiting)."""
        tasks = [running.task for running in self._jobs.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
