"""What the screens show, kept in memory and changed only by feed updates.

`JobIndex` holds the jobs of the current query by id (so a table updates rows in place, by
key) with counts by state and a per-second history for the dashboard. `OutputBuffer` is
the bounded ring of a followed job's output lines.
"""

from __future__ import annotations

import collections
import itertools
import operator
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from hodei_api.v1 import jobs_pb2, logs_pb2
from hodeictl.terminal import StreamSanitizer

FINAL_STATES = frozenset({
    jobs_pb2.JOB_STATE_SUCCEEDED, jobs_pb2.JOB_STATE_FAILED, jobs_pb2.JOB_STATE_CANCELLED,
    jobs_pb2.JOB_STATE_TIMED_OUT, jobs_pb2.JOB_STATE_LOST,
})
FAILED_STATES = frozenset({
    jobs_pb2.JOB_STATE_FAILED, jobs_pb2.JOB_STATE_TIMED_OUT, jobs_pb2.JOB_STATE_LOST,
})
# Seconds of history behind the dashboard's sparklines.
HISTORY_SECONDS = 300
# Latest failures the dashboard lists.
FAILURES_KEPT = 10


@dataclass
class Rates:
    """Jobs started and finished per second, over the last HISTORY_SECONDS."""

    started: collections.deque[int] = field(
        default_factory=lambda: collections.deque([0] * HISTORY_SECONDS, HISTORY_SECONDS))
    finished: collections.deque[int] = field(
        default_factory=lambda: collections.deque([0] * HISTORY_SECONDS, HISTORY_SECONDS))
    second: int = 0

    def _advance(self, now: float) -> None:
        second = int(now)
        if not self.second:
            self.second = second
        steps = min(second - self.second, HISTORY_SECONDS)
        for _ in range(max(steps, 0)):
            self.started.append(0)
            self.finished.append(0)
        self.second = max(second, self.second)

    def count(self, started: int, finished: int, now: float | None = None) -> None:
        self._advance(time.time() if now is None else now)
        self.started[-1] += started
        self.finished[-1] += finished

    def tick(self, now: float | None = None) -> None:
        """Move the window to now (seconds with no change count as zero)."""
        self._advance(time.time() if now is None else now)


class JobIndex:
    """The jobs a feed reported, by id, newest first when listed."""

    def __init__(self) -> None:
        self.jobs: dict[str, jobs_pb2.Job] = {}
        self.revision = 0
        self.rates = Rates()
        self.failures: collections.deque[jobs_pb2.Job] = collections.deque(maxlen=FAILURES_KEPT)

    def reset(self, jobs: Iterable[jobs_pb2.Job], revision: int = 0) -> None:
        """Replace everything with a snapshot."""
        self.jobs = {job.id: job for job in jobs}
        self.revision = revision
        self.failures.clear()
        newest = sorted((j for j in self.jobs.values() if j.state in FAILED_STATES),
                        key=lambda j: j.finished_at.ToNanoseconds())
        self.failures.extend(newest[-FAILURES_KEPT:])

    def upsert(self, job: jobs_pb2.Job) -> jobs_pb2.Job | None:
        """Store `job`; returns the version it replaced."""
        old = self.jobs.get(job.id)
        self.jobs[job.id] = job
        before = old.state if old is not None else jobs_pb2.JOB_STATE_UNSPECIFIED
        started = job.state == jobs_pb2.JOB_STATE_RUNNING and before != job.state
        finished = job.state in FINAL_STATES and before not in FINAL_STATES
        if started or finished:
            self.rates.count(int(started), int(finished))
        if finished and job.state in FAILED_STATES:
            self.failures.append(job)
        return old

    def remove(self, job_id: str) -> None:
        self.jobs.pop(job_id, None)

    def by_state(self) -> collections.Counter[int]:
        return collections.Counter(job.state for job in self.jobs.values())

    def ordered(self) -> list[jobs_pb2.Job]:
        """Newest first."""
        return sorted(self.jobs.values(), key=lambda j: j.created_at.ToNanoseconds(),
                      reverse=True)


class Position(NamedTuple):
    """Byte `offset` of output chunk (attempt, seq): where a line starts."""

    attempt: int
    seq: int
    offset: int


class OutputLine(NamedTuple):
    stream: int  # logs_pb2.LOG_STREAM_STDOUT or _STDERR
    text: str  # already sanitised
    # Where it starts, (attempt, seq, offset) as a Position has them; None for a line of
    # our own. A plain tuple: one is made for every line of output.
    start: tuple[int, int, int] | None = None


class OutputBuffer:
    """A window of at most `max_lines` lines of a job's output, sanitised, stdout and
    stderr apart, each line with where it starts in the output.

    Live output is appended (the oldest lines fall off the front); a page of earlier
    output is prepended (the newest fall off the back, and the window no longer reaches
    the live end: `at_end` is False). `total` counts every line appended, so a view can
    tell new lines came; `dropped` those that fell off the front, `prepended` those put
    in front. A line is complete at its newline; a partial last line per stream is held
    back until its newline arrives or `flush()` (the job ended).
    """

    def __init__(self, max_lines: int = 10_000) -> None:
        self.lines: collections.deque[OutputLine] = collections.deque(maxlen=max_lines)
        self.total = 0
        self.dropped = 0
        self.prepended = 0
        self.at_end = True
        # Whether output exists before the first line held (unknown: assume so).
        self.earlier = True
        self._pending: dict[int, str] = {}
        self._sanitizers: dict[int, StreamSanitizer] = {}
        self._starts: dict[int, collections.deque[tuple[int, int, int] | None]] = {}

    @property
    def max_lines(self) -> int:
        return self.lines.maxlen or 0

    def feed(self, stream: int, data: bytes, start: Position | None = None) -> int:
        """Add a chunk of one stream, whose first byte is at `start`; returns how many
        complete lines it added."""
        starts = self._starts.setdefault(stream, collections.deque())
        if stream not in self._pending and not starts:
            starts.append(start)
        if start is not None:
            # After the k-th newline: offset + the lengths of the k pieces before it + k.
            # Built in C (map, accumulate, zip): a chunk holds thousands of lines.
            pieces = data.split(b"\n")[:-1]
            after = map(operator.add, itertools.accumulate(map(len, pieces)),
                        itertools.count(start.offset + 1))
            starts.extend(zip(itertools.repeat(start.attempt), itertools.repeat(start.seq),
                              after))
        else:
            starts.extend([None] * data.count(b"\n"))
        sanitizer = self._sanitizers.setdefault(stream, StreamSanitizer())
        return self._add(stream, sanitizer.feed(data))

    def _add(self, stream: int, text: str) -> int:
        if not text:
            return 0
        text = self._pending.pop(stream, "") + text
        parts = text.split("\n")
        if parts[-1]:
            self._pending[stream] = parts[-1]
        complete = parts[:-1]
        starts = self._starts.setdefault(stream, collections.deque())
        if "\r" in text:
            complete = [line.rstrip("\r") for line in complete]
        if len(starts) == len(complete):
            # The usual case, built in C: a chunk holds thousands of lines.
            where: Iterable[tuple[int, int, int] | None] = list(starts)
            starts.clear()
        else:
            where = [starts.popleft() if starts else None for _ in complete]
        self._append(list(map(OutputLine._make,
                              zip(itertools.repeat(stream), complete, where))))
        if not parts[-1] and not starts:
            self._starts.pop(stream, None)
        return len(complete)

    def _append(self, lines: list[OutputLine]) -> None:
        self.dropped += max(0, len(self.lines) + len(lines) - self.max_lines)
        self.lines.extend(lines)
        self.total += len(lines)

    def flush(self) -> int:
        """Emit held-back partial lines (the stream ended)."""
        added = 0
        for stream, sanitizer in self._sanitizers.items():
            self._add(stream, sanitizer.flush())
        for stream, rest in list(self._pending.items()):
            del self._pending[stream]
            starts = self._starts.pop(stream, collections.deque())
            self._append([OutputLine(stream, rest.rstrip("\r"),
                                     starts.popleft() if starts else None)])
            added += 1
        self._starts.clear()
        return added

    def note(self, text: str) -> None:
        """A line of our own (an attempt separator), shown as stdout."""
        self._append([OutputLine(logs_pb2.LOG_STREAM_UNSPECIFIED, text)])

    def first_start(self) -> Position | None:
        """Where the first line held starts in the output (None: nothing held)."""
        start = next((line.start for line in self.lines if line.start is not None), None)
        return Position(*start) if start is not None else None

    def prepend(self, lines: list[OutputLine]) -> int:
        """Put earlier lines in front; returns how many are held of them."""
        room = self.max_lines - len(self.lines)
        if len(lines) > room:
            self.at_end = False
        if len(lines) > self.max_lines:
            lines = lines[-self.max_lines:]
        self.lines.extendleft(reversed(lines))
        self.prepended += len(lines)
        return len(lines)

    def clear(self) -> None:
        self.lines.clear()
        self.total = self.dropped = self.prepended = 0
        self.at_end = self.earlier = True
        self._pending.clear()
        self._sanitizers.clear()
        self._starts.clear()


def page_lines(chunks: Iterable[logs_pb2.LogChunk]) -> list[OutputLine]:
    """A page of earlier output (chunks cut at line starts by the server) as lines."""
    page = OutputBuffer(max_lines=2**31 - 1)
    attempt = 0
    for chunk in chunks:
        if chunk.attempt != attempt:
            if attempt:
                page.flush()
                page.note(f"--- attempt {chunk.attempt} ---")
            attempt = chunk.attempt
        page.feed(chunk.stream, chunk.data, Position(chunk.attempt, chunk.seq, chunk.offset))
    page.flush()
    return list(page.lines)
