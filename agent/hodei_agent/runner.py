"""Running one job attempt in a cgroup and a process group of its own, so that a restarted
agent can pick it up again.
Nothing the job needs depends on the agent staying alive:
- its stdout and stderr are files in the agent's state directory, which the agent tails
  (`batcher.tail`): a job never writes into a pipe that died with the agent;
- it is started by the agent's keeper (`hodei_agent.keeper`), its parent, which outlives
  the agent and records its exit status there unless the agent released it;
- the agent records its pid with the process's start time (pid reuse) and its cgroup and,
  once restarted, watches it through a pidfd (`os.pidfd_open`), which works for a process
  that is not its child. Timeout and cancel signal the job's cgroup and process group
  (`containment.JobProcesses`), which need no parenthood either. A job is over once its
  main process is: whatever it left running is killed then.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import shutil
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from hodei_agent.batcher import DEFAULT_LIMITS, BatchLimits, ChunkSink, tail
from hodei_agent.containment import JobProcesses
from hodei_agent.errors import JobStartError
from hodei_agent.keeperclient import KeeperClient
from hodei_agent.launch import Launch, prepare_launch, remove_if_empty, remove_temp_dir
from hodei_agent.secretfiles import JobSecrets
from hodei_agent.spawn import check_executable, exit_code_of, open_pidfd, signal_name, spawn_kept
from hodei_agent.statedir import STREAMS, JobFiles, JobMeta, process_start_ticks
from hodei_api.v1 import agent_pb2, jobs_pb2

logger = logging.getLogger(__name__)

SECRETS_NOT_REATTACHED_REASON = (
    "the agent restarted; an attempt given secrets is stopped rather than re-attached (its "
    "output could no longer be redacted)"
)

DEFAULT_KILL_GRACE = 5.0
# How long a re-attached job's status may take to appear after the job ended.
STATUS_WAIT = 2.0
STATUS_POLL = 0.02


@dataclass(frozen=True)
class JobResult:
    """How an attempt ended; `exit_code` is None when the process never ran."""

    outcome: jobs_pb2.JobState
    exit_code: int | None = None
    reason: str = ""


LEASE_LOST_REASON = "the agent's lease ran out (its watchdog stopped the job)"
UNKNOWN_END_REASON = ("its exit status was lost: it ended while neither the agent nor its "
                      "keeper was there to record it")


@dataclass(frozen=True)
class _Termination:
    outcome: jobs_pb2.JobState
    reason: str
    grace: float


class JobRunner:
    """Runs one attempt: spawns it (or re-attaches to it), tails its output into `sink`,
    enforces timeout and cancel."""

    def __init__(
        self,
        job_id: str,
        attempt: int,
        spec: jobs_pb2.JobSpec,
        *,
        worker_id: str,
        sink: ChunkSink,
        files: JobFiles,
        base_env: Mapping[str, str] | None = None,
        limits: BatchLimits = DEFAULT_LIMITS,
        secrets: Sequence[agent_pb2.SecretValue] = (),
        keeper: KeeperClient | None = None,
    ) -> None:
        """`keeper` starts the job (its parent, which records its exit status), so that an
        agent restarted on the same state dir can re-attach to it and tell how it ended;
        only `resume` and `abandon` (a job some keeper started already) do without."""
        self.job_id = job_id
        self.attempt = attempt
        self.spec = spec
        self._worker_id = worker_id
        self._sink = sink
        self._files = files
        self._base_env = base_env
        self._limits = limits
        self._keeper = keeper
        self._termination: _Termination | None = None
        self._terminate = asyncio.Event()
        # Delivered to the process, redacted from its output and from every reason.
        self._secrets = JobSecrets(spec, secrets)
        self.redact = self._secrets.redactor.redact_text

    def cancel(self, reason: str = "", grace_seconds: float = 0.0) -> None:
        """Ask for the job to end: SIGTERM to its processes, SIGKILL after the grace period."""
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
        cancelled, every process of the job is killed.
        """
        base_env = os.environ if self._base_env is None else self._base_env
        try:
            launch = prepare_launch(self.spec, self.job_id, self.attempt, self._worker_id, base_env,
                                    self._files.take_temp_dir)
        except (JobStartError, OSError) as exc:
            return self._failed_to_start(str(exc))
        delivery = None
        try:
            delivery = self._secrets.prepare(launch.env)
            return await self._run_launched(launch, on_started, delivery.stdin,
                                            delivery.directory)
        except JobStartError as exc:
            return self._failed_to_start(str(exc))
        finally:
            if delivery is not None:
                delivery.remove()
            if launch.temp_dir and not (self._files.keep_temp_dir(launch.temp_dir)
                                        or remove_if_empty(launch.temp_dir)):
                await asyncio.to_thread(remove_temp_dir, launch.temp_dir)

    async def resume(self, meta: JobMeta, offsets: Mapping[int, int]) -> JobResult:
        """Re-attach to an attempt a previous agent process started: tail its output from
        `offsets` (per stream) and see it to its end, as `run` would have."""
        loop = asyncio.get_running_loop()
        exited = asyncio.Event()
        pidfd = open_pidfd(meta.pid, meta.start_ticks)
        # A pid is not reused while a process group of that id exists, so when the pid
        # names another process, nothing of the job's group is left, and that process's own
        # group (if it leads one) must not be signalled. Its cgroup is the job's alone.
        processes = JobProcesses(meta.pid, meta.cgroup)
        if pidfd is None:
            exited.set()
            if process_start_ticks(meta.pid) is not None:
                processes.pgid = None
        else:
            loop.add_reader(pidfd, exited.set)  # a pidfd is readable once the process exited
        timeout = None
        if meta.timeout_seconds > 0:
            timeout = max(0.0, meta.started_at + meta.timeout_seconds - time.time())
        logger.info("job=%s attempt=%d: re-attached to pid %d%s", self.job_id, self.attempt,
                    meta.pid, "" if pidfd is not None else " (already ended)")
        try:
            terminated = await self._follow(processes, exited, timeout, offsets)
        finally:
            if pidfd is not None:
                loop.remove_reader(pidfd)
                os.close(pidfd)
            processes.remove(tidy=True)
            if meta.temp_dir and not remove_if_empty(meta.temp_dir):
                await asyncio.to_thread(remove_temp_dir, meta.temp_dir)
        return self._result(await self._recorded_status(), self._fenced_if_so(terminated))

    async def _recorded_status(self) -> int | None:
        """The exit status its keeper recorded. The keeper writes it just after the process
        ended, so give it a moment; None if there is none (the keeper died too)."""
        for _ in range(int(STATUS_WAIT / STATUS_POLL)):
            status = self._files.read_status()
            if status is not None:
                return status
            await asyncio.sleep(STATUS_POLL)  # a file written by another process: poll it
        return self._files.read_status()

    async def abandon(self, meta: JobMeta) -> JobResult:
        """Stop an attempt a previous agent process started and this one won't re-attach
        to (it was given secrets this process does not know): kill its processes, remove
        its secrets and temp dir; it ends LOST, to be retried."""
        pidfd = open_pidfd(meta.pid, meta.start_ticks)
        processes = JobProcesses(meta.pid if pidfd is not None else None, meta.cgroup)
        if pidfd is not None:
            os.close(pidfd)
        await processes.kill()
        processes.remove(tidy=True)
        if meta.secrets_dir:
            await asyncio.to_thread(shutil.rmtree, meta.secrets_dir, True)
        if meta.temp_dir and not remove_if_empty(meta.temp_dir):
            await asyncio.to_thread(remove_temp_dir, meta.temp_dir)
        return JobResult(jobs_pb2.JOB_STATE_LOST, None, SECRETS_NOT_REATTACHED_REASON)

    def _fenced_if_so(self, terminated: _Termination | None) -> _Termination | None:
        """The lease watchdog's doing, when it stopped the job (the agent was dead, paused
        or cut off): the attempt ends LOST."""
        if terminated is None and self._files.fenced_path.exists():
            return _Termination(jobs_pb2.JOB_STATE_LOST, LEASE_LOST_REASON, 0.0)
        return terminated

    def _failed_to_start(self, why: str) -> JobResult:
        why = self.redact(why)
        logger.warning("job=%s attempt=%d failed to start: %s", self.job_id, self.attempt, why)
        return JobResult(jobs_pb2.JOB_STATE_FAILED, reason=f"failed to start: {why}")

    async def _run_launched(
        self, launch: Launch, on_started: Callable[[int], None], stdin: bytes | None = None,
        secrets_dir: str | None = None,
    ) -> JobResult:
        program = launch.argv[0]
        try:
            executable = check_executable(program, launch.env, launch.cwd)
            stdout, stderr = self._files.create_outputs()
        except JobStartError as exc:
            return self._failed_to_start(str(exc))
        except OSError as exc:
            return self._failed_to_start(f"cannot create its output files: {exc}")
        assert self._keeper is not None, "a new job is started by a keeper"
        try:
            process = await spawn_kept(self._keeper, launch, executable, stdout, stderr,
                                       str(self._files.status_path), stdin)
        except JobStartError as exc:
            return self._failed_to_start(f"{program}: {exc}")
        finally:
            os.close(stdout)
            os.close(stderr)
        processes = JobProcesses(process.pid)  # its cgroup comes once the keeper has left it
        self._files.forget = process.release  # its end, once its files go
        try:
            meta = self._started(process.pid, process.start_ticks, launch, on_started,
                                 secrets_dir)
            process.feed()
            timeout = self.spec.timeout_seconds if self.spec.timeout_seconds > 0 else None
            terminated = await self._follow(processes, process.exited, timeout, {},
                                            placed=(process.cgroup, meta))
        finally:
            process.close()
            self._files.reusable = processes.remove()  # nothing of it is left
        returncode = process.returncode()
        if returncode is None:  # its keeper went away: the status file may still say
            returncode = await self._recorded_status()
        return self._result(returncode, self._fenced_if_so(terminated))

    def _started(
        self, pid: int, start_ticks: int | None, launch: Launch,
        on_started: Callable[[int], None], secrets_dir: str | None,
    ) -> JobMeta:
        """Record the started process for a restarted agent, then report it running."""
        meta = JobMeta(
            job_id=self.job_id, attempt=self.attempt, pid=pid,
            start_ticks=start_ticks or 0, started_at=time.time(),
            timeout_seconds=self.spec.timeout_seconds, temp_dir=launch.temp_dir,
            has_secrets=bool(self._secrets), secrets_dir=secrets_dir or "",
        )
        self._files.write_meta(meta)
        logger.debug("job=%s attempt=%d started pid=%d", self.job_id, self.attempt, pid)
        on_started(pid)
        return meta

    async def _placed(self, processes: JobProcesses, cgroup: asyncio.Future[str],
                      meta: JobMeta) -> float:
        """Take the job's cgroup once its keeper has left it, and record it for a
        restarted agent and the lease watchdog; returns how long that took."""
        started = time.monotonic()
        processes.cgroup = await cgroup
        if processes.cgroup:
            self._files.write_meta(dataclasses.replace(meta, cgroup=processes.cgroup))
        return time.monotonic() - started

    async def _follow(
        self, processes: JobProcesses, exited: asyncio.Event, time_left: float | None,
        offsets: Mapping[int, int],
        placed: tuple[asyncio.Future[str], JobMeta] | None = None,
    ) -> _Termination | None:
        """Tail both output files from `offsets` while supervising the job's processes,
        which get `time_left` seconds (None: no timeout); with none left, just read them
        out. `placed`: the job's cgroup to come, and the meta to record it in."""
        group_gone = asyncio.Event()
        fds = [self._files.open_output(stream) for stream in STREAMS]
        name = f"job-{self.job_id}-{self.attempt}"
        tails = [
            asyncio.create_task(
                tail(fd, offsets.get(stream, 0), stream, self._sink, group_gone, self._limits,
                     self._secrets.redactor or None),
                name=f"{name}-{stream}",
            )
            for fd, stream in zip(fds, STREAMS, strict=True)
        ]
        try:
            terminated = None
            if placed is not None:
                waited = await self._placed(processes, *placed)
                time_left = None if time_left is None else max(0.0, time_left - waited)
            if processes.known:
                terminated = await self._supervise(processes, exited, time_left)
            group_gone.set()
            await asyncio.gather(*tails)
        except BaseException:
            # The agent is shutting down (or broke): leave no process of the job behind.
            processes.signal(signal.SIGKILL)
            for task in tails:
                task.cancel()
            raise
        finally:
            for fd in fds:
                os.close(fd)
        return terminated

    async def _supervise(
        self, processes: JobProcesses, exited: asyncio.Event, time_left: float | None
    ) -> _Termination | None:
        """Wait for the main process to exit, stopping every process of the job on timeout
        or cancel; then kill whatever it left behind. Returns why the agent ended it, if it
        did."""
        waits = [
            asyncio.create_task(exited.wait(), name=f"job-{self.job_id}-exit"),
            asyncio.create_task(self._terminate.wait(), name=f"job-{self.job_id}-terminate"),
        ]
        try:
            await asyncio.wait(waits, timeout=time_left, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
        terminated: _Termination | None = None
        if not exited.is_set():
            if self._termination is None:
                assert time_left is not None
                self._request_termination(
                    jobs_pb2.JOB_STATE_TIMED_OUT,
                    f"timed out after {self.spec.timeout_seconds:g}s",
                    DEFAULT_KILL_GRACE,
                )
            terminated = self._termination
            assert terminated is not None
            await self._terminate_processes(processes, exited, terminated)
        # The job is over once its main process is: background processes it left go too,
        # in whatever session they put themselves.
        if not await processes.kill():
            logger.warning("job=%s attempt=%d: processes of the job are still there after "
                           "SIGKILL (%s)", self.job_id, self.attempt, processes)
        return terminated

    async def _terminate_processes(
        self, processes: JobProcesses, exited: asyncio.Event, termination: _Termination
    ) -> None:
        logger.info("job=%s attempt=%d: %s; SIGTERM to its processes, SIGKILL in %gs",
                    self.job_id, self.attempt, termination.reason, termination.grace)
        processes.signal(signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(termination.grace):
                await exited.wait()
                await processes.wait_gone()
        processes.signal(signal.SIGKILL)
        await exited.wait()

    def _result(self, returncode: int | None, terminated: _Termination | None) -> JobResult:
        """`returncode`: the process's (negative: it was killed by that signal) or the status
        its keeper recorded; None when unknown (see UNKNOWN_END_REASON)."""
        exit_code = None if returncode is None else exit_code_of(returncode)
        signame = None
        if exit_code is not None and exit_code > 128:
            signame = signal_name(exit_code - 128)
        if terminated is not None:
            result = JobResult(terminated.outcome, exit_code, self.redact(terminated.reason))
        elif exit_code is None:
            # Its keeper was killed too while no agent watched (or before the job ended): as
            # when the agent dies with its job, the attempt is lost.
            result = JobResult(jobs_pb2.JOB_STATE_LOST, None, UNKNOWN_END_REASON)
        elif exit_code == 0:
            result = JobResult(jobs_pb2.JOB_STATE_SUCCEEDED, 0)
        elif signame is not None:
            # Shell-style: 128+N is how a death by signal N is reported (and can't be told
            # from `exit 128+N`).
            result = JobResult(jobs_pb2.JOB_STATE_FAILED, exit_code, f"killed by {signame}")
        else:
            result = JobResult(jobs_pb2.JOB_STATE_FAILED, exit_code)
        # A success is routine (the server records every attempt's end); anything else is
        # worth a line in the agent's own log.
        logger.log(
            logging.DEBUG if result.outcome == jobs_pb2.JOB_STATE_SUCCEEDED else logging.INFO,
            "job=%s attempt=%d finished: %s exit_code=%s %s", self.job_id, self.attempt,
            jobs_pb2.JobState.Name(result.outcome), exit_code, result.reason)
        return result

