"""LogService: a job's output from a resume point, then live until it finishes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc

from hodei_api.v1 import logs_pb2, logs_pb2_grpc
from hodei_server.api.convert import job_to_proto
from hodei_server.api.status import streaming
from hodei_server.dispatch.loghub import LogHub
from hodei_server.errors import InvalidSpec
from hodei_server.store.jobs import JobStore
from hodei_server.validation import parse_job_id

READ_BATCH = 512
# A follower re-reads at least this often even if no wake-up arrives.
RESYNC_SECONDS = 2.0


class LogServicer(logs_pb2_grpc.LogServiceServicer):
    def __init__(self, jobs: JobStore, hub: LogHub) -> None:
        self.jobs = jobs
        self.hub = hub

    @streaming
    async def StreamLogs(
        self, request: logs_pb2.StreamLogsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[logs_pb2.LogEvent]:
        job_id = parse_job_id(request.job_id)
        if request.after_attempt < 0 or request.after_seq < 0:
            raise InvalidSpec("after_attempt and after_seq must be >= 0")
        await self.jobs.state_of(job_id)  # NOT_FOUND before anything else
        cursor = (request.after_attempt, request.after_seq)
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
                        chunk = logs_pb2.LogChunk(
                            job_id=request.job_id, attempt=row["attempt"], seq=row["seq"],
                            stream=row["stream"], data=row["data"],
                        )
                        chunk.stored_at.FromDatetime(row["created_at"])
                        yield logs_pb2.LogEvent(chunk=chunk)
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
