"""Running one job attempt as a subprocess in a process group of its own."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from hodei_agent.batcher import DEFAULT_LIMITS, BatchLimits, ChunkSink, pump
from hodei_agent.errors import JobStartError
from hodei_agent.launch import Launch, prepare_launch, remove_if_empty, remove_temp_dir
from hodei_agent.procgroup import signal_group, wait_group_gone
from hodei_agent.redact import RedactingReader
from hodei_agent.secretfiles import JobSecrets
from hodei_api.v1 import agent_pb2, jobs_pb2, logs_pb2

logger = logging.getLogger(__name__)

DEFAULT_KILL_GRACE = 5.0
# How long to wait for the killed remains of a group to disappear before moving on.
_GROUP_GONE_TIMEOUT = 2.0


@dataclass(frozen=True)
class JobResult:
    """How an attempt ended; `exit_code` is None when the process never ran."""

    outcome: jobs_pb2.JobState
    exit_code: int | None = None
    reason: str = ""


@dataclass(frozen=True)
class _Termination:
    outcome: jobs_pb2.JobState
    reason: str
    grace: float


def exit_code_of(returncode: int) -> int:
    """A shell-style exit code: a process killed by signal N reports 128+N."""
    return 128 - returncode if returncode < 0 else returncode


def _killed_by(signum: int) -> str:
    try:
        return f"killed by {signal.Signals(signum).name}"
    except ValueError:
        return f"killed by signal {signum}"


class _ExitAwareProtocol(asyncio.subprocess.SubprocessStreamProtocol):
    """The protocol behind `asyncio.create_subprocess_exec`, plus an event set on exit.

    `Process.wait()` only returns once the pipes are closed as well, which a backgrounded
    child holding them, or output not read yet (backpressure), can postpone indefinitely.
    """

    def __init__(self, limit: int, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=limit, loop=loop)
        self.exited = asyncio.Event()

    def process_exited(self) -> None:
        super().process_exited()
        self.exited.set()


class JobRunner:
    """Runs one attempt: spawns it, pumps its output into `sink`, enforces timeout and cancel."""

    def __init__(
        self,
        job_id: str,
        attempt: int,
        spec: jobs_pb2.JobSpec,
        *,
        worker_id: str,
        sink: ChunkSink,
        base_env: Mapping[str, str] | None = None,
        limits: BatchLimits = DEFAULT_LIMITS,
        secrets: Sequence[agent_pb2.SecretValue] = (),
    ) -> None:
        self.job_id = job_id
        self.attempt = attempt
        self.spec = spec
        self._worker_id = worker_id
        self._sink = sink
        self._base_env = base_env
        self._limits = limits
        self._termination: _Termination | None = None
        self._terminate = asyncio.Event()
        # Delivered to the process, redacted from its output and from every reason.
        self._secrets = JobSecrets(spec, secrets)
        self.redact = self._secrets.redactor.redact_text

    def cancel(self, reason: str = "", grace_seconds: float = 0.0) -> None:
        """Ask for the job to end: SIGTERM to its group, SIGKILL after the grace period."""
        self._request_termination(
            jobs_pb2.JOB_STATE_CANCELLED,
            reason or "cancelled",
            grace_seconds if grace_seconds > 0 else DEFAULT_KILL_GRACE,
        )

    def fence(self, reason: str, grace_seconds: float) -> None:
        """Stop the job because this agent's lease ran out: it ends LOST, to be retried."""
        self._request_termination(jobs_pb2.JOB_STATE_LOST, reason, grace_seconds)

    def _request_termination(self, outcome: jobs_pb2.JobState, reason: str, grace: float) -> None:
        if self._termination is None:
            self._termination = _Termination(outcome, reason, grace)
            self._terminate.set()

    async def run(self, on_started: Callable[[int], None]) -> JobResult:
        """Run the attempt to its end; `on_started(pid)` is called once the process exists.

        Returns only after every byte of output has been handed to the sink. If this task is
        cancelled, the job's whole process group is killed.
        """
        base_env = os.environ if self._base_env is None else self._base_env
        try:
            launch = prepare_launch(self.spec, self.job_id, self.attempt, self._worker_id, base_env)
        except (JobStartError, OSError) as exc:
            return self._failed_to_start(str(exc))
        delivery = None
        try:
            delivery = self._secrets.prepare(launch.env)
            return await self._run_launched(launch, on_started, delivery.stdin)
        except JobStartError as exc:
            return self._failed_to_start(str(exc))
        finally:
            if delivery is not None:
                delivery.remove()
            if not remove_if_empty(launch.temp_dir):
                await asyncio.to_thread(remove_temp_dir, launch.temp_dir)

    def _failed_to_start(self, why: str) -> JobResult:
        why = self.redact(why)
        logger.warning("job=%s attempt=%d failed to start: %s", self.job_id, self.attempt, why)
        return JobResult(jobs_pb2.JOB_STATE_FAILED, reason=f"failed to start: {why}")

    async def _run_launched(
        self, launch: Launch, on_started: Callable[[int], None], stdin: bytes | None = None
    ) -> JobResult:
        loop = asyncio.get_running_loop()
        program = launch.argv[0]
        try:
            transport, protocol = await loop.subprocess_exec(
                lambda: _ExitAwareProtocol(self._limits.max_bytes, loop),
                *launch.argv,
                stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=launch.cwd,
                env=launch.env,
                start_new_session=True,
            )
        except FileNotFoundError:
            return self._failed_to_start(f"executable not found: {program}")
        except PermissionError:
            return self._failed_to_start(f"permission denied: {program}")
        except OSError as exc:
            return self._failed_to_start(f"{program}: {exc.strerror or exc}")
        pid = transport.get_pid()
        assert protocol.stdout is not None and protocol.stderr is not None
        logger.info("job=%s attempt=%d started pid=%d", self.job_id, self.attempt, pid)
        on_started(pid)
        if stdin is not None and protocol.stdin is not None:
            protocol.stdin.write(stdin)
            protocol.stdin.close()
        redactor = self._secrets.redactor

        group_gone = asyncio.Event()
        name = f"job-{self.job_id}-{self.attempt}"
        pumps = [
            asyncio.create_task(
                pump(RedactingReader(reader, redactor) if redactor else reader, stream,
                     self._sink, group_gone, self._limits),
                name=f"{name}-{label}",
            )
            for reader, stream, label in (
                (protocol.stdout, logs_pb2.LOG_STREAM_STDOUT, "stdout"),
                (protocol.stderr, logs_pb2.LOG_STREAM_STDERR, "stderr"),
            )
        ]
        try:
            terminated = await self._supervise(pid, protocol.exited)
            group_gone.set()
            await asyncio.gather(*pumps)
        except BaseException:
            # The agent is shutting down (or broke): leave no process of the job behind.
            signal_group(pid, signal.SIGKILL)
            for task in pumps:
                task.cancel()
            raise
        finally:
            transport.close()  # releases pipes an escaped process may still hold
        return self._result(transport.get_returncode(), terminated)

    async def _supervise(self, pgid: int, exited: asyncio.Event) -> _Termination | None:
        """Wait for the process to exit, killing its group on timeout or cancel; then kill
        whatever the group left behind. Returns why the agent ended it, if it did."""
        timeout = self.spec.timeout_seconds if self.spec.timeout_seconds > 0 else None
        waits = [
            asyncio.create_task(exited.wait(), name=f"job-{self.job_id}-exit"),
            asyncio.create_task(self._terminate.wait(), name=f"job-{self.job_id}-terminate"),
        ]
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
        terminated: _Termination | None = None
        if not exited.is_set():
            if self._termination is None:
                assert timeout is not None
                self._request_termination(
                    jobs_pb2.JOB_STATE_TIMED_OUT,
                    f"timed out after {timeout:g}s",
                    DEFAULT_KILL_GRACE,
                )
            terminated = self._termination
            assert terminated is not None
            await self._terminate_group(pgid, exited, terminated)
        # The job is over once its main process is: background processes it left go too.
        if signal_group(pgid, signal.SIGKILL):
            logger.debug("job=%s attempt=%d: killed leftover processes", self.job_id, self.attempt)
        try:
            async with asyncio.timeout(_GROUP_GONE_TIMEOUT):
                await wait_group_gone(pgid)
        except TimeoutError:
            logger.warning(
                "job=%s attempt=%d: process group %d still exists (unreaped zombies?)",
                self.job_id,
                self.attempt,
                pgid,
            )
        return terminated

    async def _terminate_group(
        self, pgid: int, exited: asyncio.Event, termination: _Termination
    ) -> None:
        logger.info(
            "job=%s attempt=%d: %s; SIGTERM to group %d, SIGKILL in %gs",
            self.job_id,
            self.attempt,
            termination.reason,
            pgid,
            termination.grace,
        )
        signal_group(pgid, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(termination.grace):
                await exited.wait()
                await wait_group_gone(pgid)
        signal_group(pgid, signal.SIGKILL)
        await exited.wait()

    def _result(self, returncode: int | None, terminated: _Termination | None) -> JobResult:
        assert returncode is not None
        exit_code = exit_code_of(returncode)
        if terminated is not None:
            result = JobResult(terminated.outcome, exit_code, self.redact(terminated.reason))
        elif exit_code == 0:
            result = JobResult(jobs_pb2.JOB_STATE_SUCCEEDED, 0)
        elif returncode < 0:
            result = JobResult(jobs_pb2.JOB_STATE_FAILED, exit_code, _killed_by(-returncode))
        else:
            result = JobResult(jobs_pb2.JOB_STATE_FAILED, exit_code)
        logger.info(
            "job=%s attempt=%d finished: %s exit_code=%d %s",
            self.job_id,
            self.attempt,
            jobs_pb2.JobState.Name(result.outcome),
            exit_code,
            result.reason,
        )
        return result
