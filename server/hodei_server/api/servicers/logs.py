"""LogService: a job's output from a resume point or its tail, then live until it finishes;
or a page of earlier output."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import grpc

from hodei_api.v1 import logs_pb2, logs_pb2_grpc
from hodei_server.api.convert import job_to_proto
from hodei_server.api.status import streaming
from hodei_server.dispatch.loghub import LogHub
from hodei_server.errors import InvalidSpec
from hodei_server.store import logtail
from hodei_server.store.jobs import JobStore, Row
from hodei_server.store.logtail import Position
from hodei_server.validation import parse_job_id

READ_BATCH = 512
# A follower re-reads at least this often even if no wake-up arrives.
RESYNC_SECONDS = 2.0


def _check(request: logs_pb2.StreamLogsRequest) -> None:
    if request.after_attempt < 0 or request.after_seq < 0:
        raise InvalidSpec("after_attempt and after_seq must be >= 0")
    if request.tail_lines < 0:
        raise InvalidSpec("tail_lines must be >= 0")
    if request.before_attempt < 0 or request.before_seq < 0 or request.before_offset < 0:
        raise InvalidSpec("before_attempt, before_seq and before_offset must be >= 0")
    resumed = request.after_attempt or request.after_seq
    if request.before_attempt:
        if request.follow or resumed:
            raise InvalidSpec("a page (before_attempt) neither follows nor resumes")
        if not request.tail_lines:
            raise InvalidSpec("a page (before_attempt) needs tail_lines > 0")
    elif resumed and request.tail_lines:
        raise InvalidSpec("tail_lines starts a stream; a resumed one goes on from after_*")


def _chunk(job_id: str, row: Row, start: int = 0, end: int | None = None) -> logs_pb2.LogChunk:
    data: bytes = row["data"]
    chunk = logs_pb2.LogChunk(job_id=job_id, attempt=row["attempt"], seq=row["seq"],
                              stream=row["stream"], data=data[start:end], offset=start)
    chunk.stored_at.FromDatetime(row["created_at"])
    return chunk


class LogServicer(logs_pb2_grpc.LogServiceServicer):
    def __init__(self, jobs: JobStore, hub: LogHub) -> None:
        self.jobs = jobs
        self.hub = hub

    @streaming
    async def StreamLogs(
        self, request: logs_pb2.StreamLogsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[logs_pb2.LogEvent]:
        job_id = parse_job_id(request.job_id)
        _check(request)
        await self.jobs.state_of(job_id)  # NOT_FOUND before anything else
        if request.before_attempt:
            before = Position(request.before_attempt, request.before_seq,
                              request.before_offset)
            async for event in self._page(request.job_id, job_id, request.tail_lines, before):
                yield event
            return
        cursor = (request.after_attempt, request.after_seq)
        start = None
        if request.tail_lines:
            start = await logtail.line_start(self.jobs, job_id, request.tail_lines)
            if start is not None:
                cursor = (start.attempt, start.seq - 1)
        wake = self.hub.subscribe(job_id)
        try:
            while True:
                wake.clear()
                # Read the state first: a final state is committed after every chunk of
                # the attempt, so chunks read after seeing it are complete.
                state = await self.jobs.state_of(job_id)
                while True:
                    rows = await self.jobs.read_chunks(job_id, *cursor, limit=READ_BATCH)
                    for row in rows:
                        cursor = (row["attempt"], row["seq"])
                        offset = 0
                        if start is not None and cursor == start[:2]:
                            offset = start.offset
                            if offset >= len(row["data"]):
                                continue  # the tail starts with the next chunk
                        yield logs_pb2.LogEvent(chunk=_chunk(request.job_id, row, offset))
                    if len(rows) < READ_BATCH:
                        break
                if state.is_final:
                    row, attempts = await self.jobs.get(job_id)
                    yield logs_pb2.LogEvent(end=logs_pb2.LogEnd(job=job_to_proto(row, attempts)))
                    return
                if not request.follow:
                    return
                try:
                    await asyncio.wait_for(wake.wait(), timeout=RESYNC_SECONDS)
                except TimeoutError:
                    pass
        finally:
            self.hub.unsubscribe(job_id, wake)

    async def _page(self, wire_id: str, job_id: uuid.UUID, lines: int,
                    before: Position) -> AsyncIterator[logs_pb2.LogEvent]:
        """The last `lines` lines before `before`, as chunks cut at both ends."""
        start = await logtail.line_start(self.jobs, job_id, lines, before)
        cursor = (start.attempt, start.seq - 1) if start is not None else (0, 0)
        while True:
            rows = await self.jobs.read_chunks(job_id, *cursor, limit=READ_BATCH)
            for row in rows:
                cursor = (row["attempt"], row["seq"])
                if cursor > before[:2] or (cursor == before[:2] and not before.offset):
                    return
                first = start if start is not None and cursor == start[:2] else None
                begin = first.offset if first is not None else 0
                end = before.offset if cursor == before[:2] else len(row["data"])
                if begin < end:
                    yield logs_pb2.LogEvent(chunk=_chunk(wire_id, row, begin, end))
            if len(rows) < READ_BATCH:
                return
