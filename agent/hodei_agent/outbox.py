"""Everything the agent owes the server per job attempt, kept until the server acknowledges it.

For each (job_id, attempt) the outbox holds its `JobAccepted`, its log chunks numbered from
seq 1 and its `JobFinished`. Messages leave through `take_unsent`, in the order the server
needs them (accepted, chunks by seq, then the result once every chunk is out); `rewind`
makes everything unacknowledged unsent again for a new stream.
"""

from __future__ import annotations

import asyncio
import logging

from hodei_agent.statedir import ChunkJournal
from hodei_api.v1 import agent_pb2, jobs_pb2, logs_pb2

logger = logging.getLogger(__name__)

MAX_UNACKED_BYTES = 8 * 1024 * 1024

JobKey = tuple[str, int]


class JobRecord:
    """What one job attempt owes the server; the runner writes its output here."""

    def __init__(self, job_id: str, attempt: int, max_unacked_bytes: int, changed: asyncio.Event):
        self.job_id = job_id
        self.attempt = attempt
        self._max_unacked_bytes = max_unacked_bytes
        self._changed = changed
        self._room = asyncio.Event()
        self._room.set()
        self._chunks: dict[int, logs_pb2.LogChunk] = {}
        self.unacked_bytes = 0
        self.last_seq = 0
        self.acked_seq = 0
        self.sent_seq = 0
        self.accepted: agent_pb2.JobAccepted | None = None
        self.accepted_sent = False
        self.finished: agent_pb2.JobFinished | None = None
        self.finished_sent = False
        # Where each chunk is recorded before it can be sent (a restarted agent reads it).
        self.journal: ChunkJournal | None = None

    @property
    def key(self) -> JobKey:
        """(job_id, attempt)."""
        return self.job_id, self.attempt

    def accept(self, pid: int) -> None:
        """Record that the job's process started."""
        self.accepted = agent_pb2.JobAccepted(job_id=self.job_id, attempt=self.attempt, pid=pid)
        self.accepted_sent = False
        self._changed.set()

    async def write(self, stream: logs_pb2.LogStream, data: bytes) -> None:
        """Queue one chunk under the next seq; waits while the unacknowledged bytes are over
        the bound (a chunk larger than the whole bound is let through once nothing is owed)."""
        while self.unacked_bytes and self.unacked_bytes + len(data) > self._max_unacked_bytes:
            self._room.clear()
            await self._room.wait()
        self.last_seq += 1
        if self.journal is not None:
            self.journal.chunk(self.last_seq, stream, len(data))
        self._chunks[self.last_seq] = logs_pb2.LogChunk(
            job_id=self.job_id, attempt=self.attempt, seq=self.last_seq, stream=stream, data=data
        )
        self.unacked_bytes += len(data)
        self._changed.set()

    def restore(
        self, chunks: list[tuple[int, logs_pb2.LogStream, bytes]], acked_seq: int, last_seq: int
    ) -> None:
        """Take over what a previous agent process owed: the unacknowledged `chunks` as
        (seq, stream, data), numbered after `acked_seq`, up to `last_seq`."""
        self.acked_seq = self.sent_seq = acked_seq
        self.last_seq = last_seq
        for seq, stream, data in chunks:
            self._chunks[seq] = logs_pb2.LogChunk(
                job_id=self.job_id, attempt=self.attempt, seq=seq, stream=stream, data=data
            )
            self.unacked_bytes += len(data)
        self._changed.set()

    def finish(
        self,
        outcome: jobs_pb2.JobState,
        *,
        exit_code: int | None = None,
        reason: str = "",
    ) -> None:
        """Record the result; call it once every chunk of the attempt has been written."""
        self.finished = agent_pb2.JobFinished(
            job_id=self.job_id,
            attempt=self.attempt,
            has_exit_code=exit_code is not None,
            exit_code=exit_code or 0,
            reason=reason,
            outcome=outcome,
            last_seq=self.last_seq,
        )
        self.finished_sent = False
        self._changed.set()

    def ack_chunks(self, up_to_seq: int) -> None:
        """Forget every chunk with seq <= up_to_seq."""
        up_to_seq = min(up_to_seq, self.last_seq)
        for seq in range(self.acked_seq + 1, up_to_seq + 1):
            self.unacked_bytes -= len(self._chunks.pop(seq).data)
        if up_to_seq > self.acked_seq and self.journal is not None:
            self.journal.acked(up_to_seq)
        self.acked_seq = max(self.acked_seq, up_to_seq)
        self.sent_seq = max(self.sent_seq, self.acked_seq)
        # The server handles a stream in order: acking a chunk means it saw the JobAccepted.
        self.accepted_sent = True
        self._room.set()

    def rewind(self) -> None:
        """Make everything unacknowledged unsent again (a new stream starts)."""
        self.sent_seq = self.acked_seq
        self.accepted_sent = self.acked_seq > 0
        self.finished_sent = False

    def take_unsent(self, limit: int) -> list[agent_pb2.AgentMessage]:
        """Up to about `limit` messages not yet sent on this stream, now marked sent."""
        batch: list[agent_pb2.AgentMessage] = []
        if self.accepted is not None and not self.accepted_sent:
            self.accepted_sent = True
            batch.append(agent_pb2.AgentMessage(job_accepted=self.accepted))
        end = min(self.last_seq, self.sent_seq + max(limit, 0))
        batch.extend(
            agent_pb2.AgentMessage(log_chunk=self._chunks[seq])
            for seq in range(self.sent_seq + 1, end + 1)
        )
        self.sent_seq = max(self.sent_seq, end)
        if self.finished is not None and not self.finished_sent and self.sent_seq == self.last_seq:
            self.finished_sent = True
            batch.append(agent_pb2.AgentMessage(job_finished=self.finished))
        return batch


class Outbox:
    """All job records, from a job's start until the server acknowledges its result."""

    def __init__(self, max_unacked_bytes: int = MAX_UNACKED_BYTES) -> None:
        self.max_unacked_bytes = max_unacked_bytes
        self._records: dict[JobKey, JobRecord] = {}
        self.changed = asyncio.Event()
        self._empty = asyncio.Event()
        self._empty.set()

    def __contains__(self, key: JobKey) -> bool:
        return key in self._records

    def __len__(self) -> int:
        return len(self._records)

    def open(self, job_id: str, attempt: int) -> JobRecord:
        """Start the record of a job attempt."""
        key = (job_id, attempt)
        if key in self._records:
            raise KeyError(f"job {job_id}/{attempt} already has a record")
        record = JobRecord(job_id, attempt, self.max_unacked_bytes, self.changed)
        self._records[key] = record
        self._empty.clear()
        return record

    def get(self, key: JobKey) -> JobRecord | None:
        return self._records.get(key)

    def keys(self) -> list[JobKey]:
        """Every job attempt still running or owing the server something."""
        return list(self._records)

    def ack_chunks(self, ack: agent_pb2.LogAck) -> None:
        """Apply a cumulative `LogAck`."""
        record = self._records.get((ack.job_id, ack.attempt))
        if record is None:
            logger.debug("job=%s attempt=%d: LogAck for no record", ack.job_id, ack.attempt)
            return
        record.ack_chunks(ack.up_to_seq)

    def ack_finished(self, ack: agent_pb2.FinishedAck) -> bool:
        """Apply a `FinishedAck`: the server stored the result and every chunk before it.

        True when that released the attempt's record (nothing more is owed for it)."""
        key = (ack.job_id, ack.attempt)
        record = self._records.get(key)
        if record is None or record.finished is None:
            logger.debug("job=%s attempt=%d: early or stray FinishedAck", *key)
            return False
        del self._records[key]
        if not self._records:
            self._empty.set()
        return True

    def rewind(self) -> None:
        """A new stream starts: everything unacknowledged must be sent again."""
        for record in self._records.values():
            record.rewind()
        self.changed.set()

    def take_unsent(self, limit: int = 64) -> list[agent_pb2.AgentMessage]:
        """Up to about `limit` messages to send next, each job's in the order it needs."""
        batch: list[agent_pb2.AgentMessage] = []
        for record in list(self._records.values()):
            batch.extend(record.take_unsent(limit - len(batch)))
            if len(batch) >= limit:
                break
        return batch

    async def wait_empty(self) -> None:
        """Wait until the server acknowledged every result."""
        await self._empty.wait()
