"""Starting, tracking and cancelling the agent's job attempts."""

from __future__ import annotations

import asyncio
import dataclasses
import glob
import logging
import os
import tempfile
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path

from hodei_agent import jsonlog
from hodei_agent.batcher import DEFAULT_LIMITS, BatchLimits
from hodei_agent.keeperclient import KeeperClient
from hodei_agent.launch import temp_dir_prefix
from hodei_agent.outbox import JobKey, JobRecord, Outbox
from hodei_agent.runner import STATUS_POLL, STATUS_WAIT, JobResult, JobRunner
from hodei_agent.secretfiles import SECRETS_DIR_ENV, is_secrets_dir
from hodei_agent.statedir import JobFiles, JobMeta, StateDir
from hodei_agent.watchdog import job_process
from hodei_api.v1 import agent_pb2, jobs_pb2, logs_pb2

logger = logging.getLogger(__name__)

DRAINING_REASON = "agent is draining"


def _environ(pid: int) -> dict[str, str]:
    """The environment process `pid` was started with ({} if unreadable)."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.decode(errors="replace").partition("=") for item in raw.split(b"\0") if item)
    return {key: value for key, _, value in pairs}


def _temp_dir_of(meta: JobMeta) -> str:
    """The private temp dir the runner made for the attempt ("" if it is not there)."""
    found = glob.glob(os.path.join(glob.escape(tempfile.gettempdir()),
                                   glob.escape(temp_dir_prefix(meta.job_id, meta.attempt))
                                   + "*"))
    return found[0] if len(found) == 1 else ""


@dataclass(frozen=True)
class _Running:
    runner: JobRunner
    task: asyncio.Task[None]


class JobSupervisor:
    """Runs each `RunJob` as a named task; results and output go to the outbox."""

    def __init__(
        self,
        outbox: Outbox,
        state: StateDir,
        *,
        slots: int,
        worker_id: str = "",
        limits: BatchLimits = DEFAULT_LIMITS,
        keeper: KeeperClient,
    ) -> None:
        """`keeper` starts the jobs: their parent, which outlives this agent process."""
        self._outbox = outbox
        self._state = state
        self._keeper = keeper
        self._files: dict[JobKey, JobFiles] = {}
        # Files of jobs that are over, recycled for the next ones (`JobFiles.recycle`), and
        # every prefix in use by files this process made.
        self._spare: list[JobFiles] = []
        self._taken: set[str] = set()
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
        try:
            files = self._new_files(key)
            # Before the job exists, so that an agent killed while starting it is followed
            # by one that finds it (see `_started_unrecorded`).
            files.write_meta(JobMeta(
                job_id=command.job_id, attempt=command.attempt, pid=0, start_ticks=0,
                started_at=time.time(), timeout_seconds=command.spec.timeout_seconds,
                temp_dir=files.temp_dir, has_secrets=bool(command.spec.secrets),
            ))
            record.journal = files.open_journal()
        except OSError as exc:
            logger.error("job=%s attempt=%d: cannot create its state: %s", *key, exc)
            record.finish(jobs_pb2.JOB_STATE_FAILED, reason=f"failed to start: {exc}")
            return
        self._files[key] = files
        runner = JobRunner(
            command.job_id,
            command.attempt,
            command.spec,
            worker_id=self.worker_id,
            sink=record,
            files=files,
            limits=self._limits,
            secrets=command.secrets,
            keeper=self._keeper,
        )
        self._start(runner, record, runner.run(record.accept))

    def adopt(self) -> list[JobKey]:
        """Take over the attempts a previous agent process left in the state dir: resend what
        the server did not acknowledge, then follow each (still running or not) to its end."""
        adopted = []
        for files in self._state.existing_jobs():
            meta = files.read_meta()
            if meta is not None and meta.pid == 0:
                meta = self._started_unrecorded(files, meta)
            if meta is None or (meta.job_id, meta.attempt) in self._outbox:
                # Started by no process we can name (its agent died while spawning it).
                files.remove()
                continue
            key = (meta.job_id, meta.attempt)
            journal = files.read_journal()
            if meta.has_secrets:
                self._abandon(files, meta, journal.acked_seq)
                adopted.append(key)
                continue
            unacked = []
            fds = {stream: files.open_output(stream) for stream in journal.offsets}
            try:
                for entry in journal.entries:
                    if entry.seq > journal.acked_seq:
                        data = os.pread(fds[entry.stream], entry.length, entry.offset)
                        unacked.append((entry.seq, logs_pb2.LogStream.ValueType(entry.stream),
                                        data))
            finally:
                for fd in fds.values():
                    os.close(fd)
            record = self._outbox.open(*key)
            record.restore(unacked, journal.acked_seq, journal.last_seq)
            record.accept(meta.pid)
            record.journal = files.open_journal()
            self._files[key] = files
            runner = JobRunner(
                meta.job_id,
                meta.attempt,
                jobs_pb2.JobSpec(timeout_seconds=meta.timeout_seconds),
                worker_id=self.worker_id,
                sink=record,
                files=files,
                limits=self._limits,
            )
            self._start(runner, record, runner.resume(meta, journal.offsets))
            logger.info("job=%s attempt=%d: adopted (seq %d, %d chunk(s) to resend)", *key,
                        journal.last_seq, len(unacked))
            adopted.append(key)
        return adopted

    @staticmethod
    def _started_unrecorded(files: JobFiles, meta: JobMeta) -> JobMeta | None:
        """The attempt of a previous agent process that died while starting it, before it
        recorded the pid: found by its output file if it runs, by its recorded exit status
        if it ended; None if it never started (nothing runs, nothing is to be reported).

        Re-attached like any other, it is not handed back while it may still run: the server
        would run it again at once."""
        found, status = JobSupervisor._process_or_status(files)
        if found is not None:
            pid, ticks = found
            secrets_dir = _environ(pid).get(SECRETS_DIR_ENV, "")
            meta = dataclasses.replace(
                meta, pid=pid, start_ticks=ticks, temp_dir=meta.temp_dir or _temp_dir_of(meta),
                secrets_dir=secrets_dir if is_secrets_dir(secrets_dir) else "")
        elif status is not None:
            # It ended already. A pid that names another process (init's, with a start
            # time no process has) makes the runner read the rest of its output and its
            # recorded status, and signal nothing.
            meta = dataclasses.replace(meta, pid=1, start_ticks=-1,
                                       temp_dir=meta.temp_dir or _temp_dir_of(meta))
        else:
            return None
        files.write_meta(meta)
        logger.info("job=%s attempt=%d: its agent died while starting it; found pid %d",
                    meta.job_id, meta.attempt, meta.pid)
        return meta

    @staticmethod
    def _process_or_status(files: JobFiles) -> tuple[tuple[int, int] | None, int | None]:
        """The attempt's running process, else the exit status its keeper recorded; (None,
        None) if neither shows within STATUS_WAIT. A job that has just ended is neither for
        a moment (a zombie has no open files; its keeper records the status once it reaped
        it): taking that for "never started" would run it twice."""
        deadline = time.monotonic() + STATUS_WAIT
        while True:
            found = job_process(files.prefix)
            status = files.read_status() if found is None else None
            if found is not None or status is not None or time.monotonic() > deadline:
                return found, status
            time.sleep(STATUS_POLL)  # once per agent start, for an attempt it left unrecorded

    def _abandon(self, files: JobFiles, meta: JobMeta, acked_seq: int) -> None:
        """An attempt that was given secrets is not re-attached: this process does not know
        them, so it could not redact what the job prints next, nor what it printed and the
        server did not acknowledge (the files hold the output as the job wrote it). The job
        is stopped and ends LOST, to be retried; its secrets directory is removed."""
        key = (meta.job_id, meta.attempt)
        record = self._outbox.open(*key)
        record.restore([], acked_seq, acked_seq)
        record.accept(meta.pid)
        self._files[key] = files
        runner = JobRunner(
            meta.job_id, meta.attempt, jobs_pb2.JobSpec(), worker_id=self.worker_id,
            sink=record, files=files, limits=self._limits,
        )
        self._start(runner, record, runner.abandon(meta))
        logger.warning("job=%s attempt=%d: had secrets, so it is stopped rather than "
                       "re-attached", *key)

    def _new_files(self, key: JobKey) -> JobFiles:
        if self._spare:
            return self._spare.pop()
        files = self._state.new_job(*key, taken=self._taken)
        self._taken.add(files.prefix)
        return files

    def release(self, key: JobKey) -> None:
        """The server acknowledged the attempt's result: its files can go, or serve the next
        job (a few are kept: the slots' worth)."""
        files = self._files.pop(key, None)
        if files is None:
            return
        if len(self._spare) < self._slots and files.recycle():
            self._spare.append(files)
        else:
            files.remove()
            self._taken.discard(files.prefix)

    def close(self) -> None:
        """Remove the recycled files that no job uses (the agent is exiting)."""
        for files in self._spare:
            files.remove()
        self._spare.clear()

    def _start(
        self, runner: JobRunner, record: JobRecord, work: Awaitable[JobResult]
    ) -> None:
        task = asyncio.create_task(
            self._run(record, work), name=f"job-{runner.job_id}-{runner.attempt}"
        )
        self._jobs[record.key] = _Running(runner, task)
        self._idle.clear()

    async def _run(self, record: JobRecord, work: Awaitable[JobResult]) -> None:
        # Every record this job's task logs names it (hodei_agent.jsonlog).
        jsonlog.set_log_context(job=record.key[0], attempt=record.key[1],
                                worker=self.worker_id)
        try:
            try:
                result = await work
            except Exception as exc:
                # A bug of the agent, not of the job: report it rather than leave the job hanging.
                logger.exception("job=%s attempt=%d: agent error", *record.key)
                result = JobResult(jobs_pb2.JOB_STATE_FAILED, reason=f"agent error: {exc!r}")
            # A success is routine (the server records every attempt's end): one line at
            # INFO per job is a write to the log per job on the hot path.
            level = (logging.DEBUG if result.outcome == jobs_pb2.JOB_STATE_SUCCEEDED
                     else logging.INFO)
            logger.log(level, "job=%s attempt=%d: ended %s (exit %s)", *record.key,
                        jobs_pb2.JobState.Name(result.outcome).removeprefix("JOB_STATE_"),
                        "-" if result.exit_code is None else result.exit_code)
            record.finish(result.outcome, exit_code=result.exit_code,
                          reason=self._jobs[record.key].runner.redact(result.reason))
        finally:
            del self._jobs[record.key]
            if not self._jobs:
                self._idle.set()

    def job_pids(self) -> set[int]:
        """The first process of each running attempt that has started."""
        pids = set()
        for key in self._jobs:
            record = self._outbox.get(key)
            if record is not None and record.accepted is not None and record.accepted.pid > 0:
                pids.add(int(record.accepted.pid))
        return pids

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
