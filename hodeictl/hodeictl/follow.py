"""A job's output, written byte for byte as it arrives, and how its end becomes an exit code."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable
from typing import BinaryIO

from hodei_api.v1 import jobs_pb2, logs_pb2
from hodeictl.client import HodeiClient
from hodeictl.errors import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_TIMED_OUT
from hodeictl.logview import LogView
from hodeictl.output import note
from hodeictl.terminal import StreamSanitizer

# How often `job run` asks why its job waits, until its output starts.
WAITING_POLL_SECONDS = 2.0
_ENDINGS = {
    jobs_pb2.JOB_STATE_TIMED_OUT: ("timed out", EXIT_TIMED_OUT),
    jobs_pb2.JOB_STATE_CANCELLED: ("was cancelled", EXIT_INTERRUPTED),
    jobs_pb2.JOB_STATE_FAILED: ("failed", EXIT_FAILURE),
    jobs_pb2.JOB_STATE_LOST: ("was lost", EXIT_FAILURE),
}


class _Output:
    """One of our output streams: job bytes go to a pipe or file unchanged, and to a
    terminal only through a `StreamSanitizer` (no escape sequence of the job's reaches it)."""

    def __init__(self, stream: BinaryIO, isatty: bool, colours: bool = False) -> None:
        self.stream = stream
        self.sanitizer = StreamSanitizer(colours=colours) if isatty else None

    def write(self, data: bytes) -> None:
        if self.sanitizer is not None:
            data = self.sanitizer.feed(data).encode()
        self.stream.write(data)
        self.stream.flush()

    def close(self) -> None:
        if self.sanitizer is not None:
            self.stream.write(self.sanitizer.flush().encode())
            self.stream.flush()


async def write_logs(client: HodeiClient, job_id: str, *, follow: bool,
                     on_output: Callable[[], None] | None = None,
                     view: LogView | None = None) -> jobs_pb2.Job | None:
    """Write the job's stdout and stderr chunks to ours; the finished job if the stream says.

    Into a pipe or file the bytes are never decoded; to a terminal they are made safe
    (`hodeictl.terminal`). Each chunk is flushed so the two streams interleave as they
    were produced.
    """
    view = view or LogView()
    out = _Output(sys.stdout.buffer, sys.stdout.isatty(), view.colours_on(sys.stdout))
    err = _Output(sys.stderr.buffer, sys.stderr.isatty(), view.colours_on(sys.stderr))
    attempt = 0
    final: jobs_pb2.Job | None = None
    try:
        if view.tail is not None:
            after = await _write_tail(client, job_id, view, out, err)
        else:
            after = (0, 0)
        async with contextlib.aclosing(client.stream_logs(job_id, follow=follow,
                                                          after=after)) as events:
            async for event in events:
                if event.HasField("end"):
                    final = event.end.job
                    continue
                chunk = event.chunk
                if on_output is not None:
                    on_output()
                if chunk.attempt != attempt:
                    if attempt and sys.stderr.isatty():
                        note(f"--- job {job_id}: attempt {chunk.attempt} ---")
                    attempt = chunk.attempt
                stderr = chunk.stream == logs_pb2.LOG_STREAM_STDERR
                data = view.shown(chunk, stderr)
                if data:
                    (err if stderr else out).write(data)
    finally:
        out.close()
        err.close()
    return final


async def _write_tail(client: HodeiClient, job_id: str, view: LogView, out: _Output,
                      err: _Output) -> tuple[int, int]:
    """The last `view.tail` lines of the output so far; where the stream goes on from.

    The server cuts the tail (reading back from the end), so a long output is not read
    whole; `--tail 0` asks for one line, to learn where the output ends.
    """
    position = (0, 0)
    lines: list[tuple[bool, bytes]] = []
    open_line: dict[bool, int | None] = {}
    async with contextlib.aclosing(client.stream_logs(
            job_id, follow=False, tail_lines=max(view.tail or 0, 1))) as events:
        async for event in events:
            if event.HasField("chunk"):
                chunk = event.chunk
                position = (chunk.attempt, chunk.seq)
                stderr = chunk.stream == logs_pb2.LOG_STREAM_STDERR
                for line in view.lines(chunk, stderr):
                    index = open_line.get(stderr)
                    if index is not None:  # a line split across chunks is one line
                        lines[index] = (stderr, lines[index][1] + line)
                    else:
                        lines.append((stderr, line))
                        index = len(lines) - 1
                    open_line[stderr] = None if line.endswith(b"\n") else index
    for stderr, line in lines[len(lines) - view.tail:] if view.tail else []:
        (err if stderr else out).write(line)
    view.tail_done()
    return position


async def follow_run(client: HodeiClient, job_id: str, *, view: LogView | None = None,
                     poll_interval: float = WAITING_POLL_SECONDS) -> jobs_pb2.Job | None:
    """`write_logs(follow=True)`, and while the job waits to be placed, why (once for each
    reason the server gives, on stderr)."""
    started = asyncio.Event()
    watcher = asyncio.create_task(_say_why_waiting(client, job_id, started, poll_interval))
    try:
        return await write_logs(client, job_id, follow=True, on_output=started.set,
                                view=view)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await watcher


async def _say_why_waiting(client: HodeiClient, job_id: str, started: asyncio.Event,
                           poll_interval: float) -> None:
    from hodei_api.v1 import jobs_pb2

    said: set[str] = set()
    while not started.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(started.wait(), poll_interval)
            return
        try:
            job = await client.get_job(job_id)
        except Exception:
            continue
        if job.state != jobs_pb2.JOB_STATE_PENDING:
            return
        reason = job.waiting_reason.strip()
        if reason and reason not in said:
            said.add(reason)
            note(f"Job {job_id} is waiting: {reason}")


def exit_status(job: jobs_pb2.Job) -> tuple[int, str | None]:
    """Our exit code for a finished job, and a line saying how it ended unless it just exited.

    A job that exited passes its exit code on; a timed-out one gives 124 like timeout(1), a
    cancelled one 130; one that ended without an exit code otherwise gives 1.
    """
    state = job.state
    exited = job.has_exit_code and 0 <= job.exit_code <= 255
    if state == jobs_pb2.JOB_STATE_SUCCEEDED:
        return (job.exit_code if exited else 0), None
    if state == jobs_pb2.JOB_STATE_FAILED and exited and job.exit_code != 0:
        return job.exit_code, None
    if state not in _ENDINGS:
        name = jobs_pb2.JobState.Name(state).removeprefix("JOB_STATE_")
        return EXIT_FAILURE, f"Job {job.id} has not finished (state {name})."
    phrase, code = _ENDINGS[state]
    reason = job.reason.strip()
    detail = f": {reason}" if reason and reason.lower() not in phrase else ""
    return code, f"Job {job.id} {phrase}{detail}."
