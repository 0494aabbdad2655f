"""Reading an agent's stream: its messages checked, stored a batch at a time, then answered.

The server handles each agent's messages in order. Whatever has arrived by the time the
previous batch is stored is stored as one batch (`_Batch`), each statement committing by
itself: BEGIN and COMMIT around the batch would cost the server more than the extra commits
cost PostgreSQL. Nothing needs the batch to be atomic: if it fails half-way, nothing of it
is answered, the agent resends it all, and what was already stored is refused or ignored
as a duplicate (the fences, idempotent chunk inserts). Answers (acknowledgements, wake-ups)
go out only once the whole batch is stored, so an agent never forgets something the
database does not hold.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
from google.protobuf.json_format import MessageToDict

from hodei_api.v1 import agent_pb2
from hodei_server import telemetry
from hodei_server.dispatch.dispatcher import Dispatcher
from hodei_server.dispatch.loghub import LogHub
from hodei_server.dispatch.session import NOT_CURRENT, AgentSession
from hodei_server.errors import InvalidSpec
from hodei_server.store.db import Conn
from hodei_server.store.jobs import Deferred, Ending, JobStore
from hodei_server.store.states import NEVER_RETRIED, JobState
from hodei_server.store.workers import WorkerStore
from hodei_server.validation import validate_agent_message

log = logging.getLogger(__name__)

MAX_BATCH = 256
# Attempts one stream may have output in flight for at once (a bound on what is tracked).
MAX_OPEN_ATTEMPTS = 16384


class _StreamCheck:
    """What one stream's messages must respect beyond their own fields.

    Within a stream an agent sends each attempt's chunks in increasing seq order (it
    rewinds only for a new stream), so a seq that goes back is a broken or hostile agent.
    """

    def __init__(self) -> None:
        self.last_seq: dict[tuple[str, int], int] = {}
        self.refusal = ""

    def check(self, message: agent_pb2.AgentMessage) -> Sequence[agent_pb2.AgentMessage]:
        """The messages `message` carries (itself, or a batch's), each checked."""
        kind = validate_agent_message(message)
        if kind != "batch":
            self._follow(message, kind)
            return (message,)
        for inner in message.batch.messages:
            self._follow(inner, inner.WhichOneof("msg"))
        return message.batch.messages

    def _follow(self, message: agent_pb2.AgentMessage, kind: str | None) -> None:
        if kind == "log_chunk":
            chunk = message.log_chunk
            key = (chunk.job_id, chunk.attempt)
            previous = self.last_seq.get(key)
            if previous is not None and chunk.seq <= previous:
                raise InvalidSpec(
                    f"log_chunk.seq {chunk.seq} of job {chunk.job_id} attempt {chunk.attempt} "
                    f"does not follow seq {previous} sent before on this stream"
                )
            if previous is None and len(self.last_seq) >= MAX_OPEN_ATTEMPTS:
                raise InvalidSpec(f"output for more than {MAX_OPEN_ATTEMPTS} attempts at once")
            self.last_seq[key] = chunk.seq
        elif kind == "job_finished":
            self.last_seq.pop((message.job_finished.job_id, message.job_finished.attempt), None)


class Inbox:
    """One agent stream's incoming side: read, check, store and answer its messages."""

    def __init__(
        self, session: AgentSession, jobs: JobStore, workers: WorkerStore, hub: LogHub,
        dispatcher: Dispatcher, server_id: str,
    ) -> None:
        self.session = session
        self.jobs = jobs
        self.workers = workers
        self.hub = hub
        self.dispatcher = dispatcher
        self.server_id = server_id
        self.check = _StreamCheck()

    @property
    def refusal(self) -> str:
        """Why the stream is refused (a message broke the contract); "" if it is not."""
        return self.check.refusal

    async def read(self, requests: AsyncIterator[agent_pb2.AgentMessage]) -> None:
        """Take the agent's messages until its stream ends; closes the session after the
        last of them is handled."""
        queue: asyncio.Queue[agent_pb2.AgentMessage | None] = asyncio.Queue()
        handler = asyncio.create_task(
            self._handle(queue), name=f"agent-processor-{self.session.worker_id}"
        )
        try:
            async for message in requests:
                # A message that breaks the contract ends the stream (INVALID_ARGUMENT);
                # what came before it is still stored and acknowledged.
                for each in self.check.check(message):
                    queue.put_nowait(each)
        except InvalidSpec as exc:
            self.check.refusal = exc.message
            log.warning("worker %s: refused a message, closing its stream: %s",
                        self.session.worker_id, exc.message)
        except (grpc.aio.AioRpcError, asyncio.CancelledError):
            pass
        finally:
            queue.put_nowait(None)
            try:
                await asyncio.shield(handler)
            except Exception:
                log.exception("processing messages of worker %s failed", self.session.worker_id)
            self.session.close()

    async def _handle(self, queue: asyncio.Queue[agent_pb2.AgentMessage | None]) -> None:
        """Store and answer the messages in order, what has arrived meanwhile as one batch."""
        while True:
            pending = [await queue.get()]
            while len(pending) < MAX_BATCH and not queue.empty():
                pending.append(queue.get_nowait())
            messages = [m for m in pending if m is not None]
            if messages:
                batch = _Batch(self, messages)
                try:
                    async with self.jobs.pool.connection() as conn:
                        await batch.store(conn)
                        await batch.settle()
                except Exception as exc:
                    # Nothing of this batch was answered: end the stream, and the agent
                    # reconnects and resends it (stored chunks are idempotent).
                    log.warning("worker %s: could not store its messages (%s); closing its "
                                "stream so it resends them", self.session.worker_id,
                                str(exc).strip().splitlines()[0] if str(exc).strip() else exc)
                    self.session.close()
                    return
                batch.answer()
            if len(messages) < len(pending):
                return


class _Stored(Protocol):
    """What one message (or run of chunks) of a batch stored, and what it is answered."""

    async def settle(self) -> None:
        """Read what the statement decided, once the whole batch is stored."""

    def answer(self, inbox: Inbox) -> None:
        """Tell the agent, and wake whoever waits on it."""


class _Batch:
    """One batch of an agent's messages: `store` runs their statements in order, `settle`
    reads what each decided, and only then does `answer` tell the agent."""

    def __init__(self, inbox: Inbox, messages: list[agent_pb2.AgentMessage]) -> None:
        self.inbox = inbox
        self.messages = messages
        self.stored: list[_Stored] = []

    async def store(self, conn: Conn) -> None:
        """Output first, then heartbeats, then the attempts started, then those ended: an
        attempt's output is sent before its end, and its start before its end, so this
        order keeps each attempt's; different attempts' messages are independent."""
        chunks: list[Any] = []
        accepted: list[agent_pb2.JobAccepted] = []
        finished: list[agent_pb2.JobFinished] = []
        beats: list[agent_pb2.Heartbeat] = []
        for message in self.messages:
            kind = message.WhichOneof("msg")
            if kind == "log_chunk":
                chunks.append(message.log_chunk)
            elif kind == "heartbeat":
                beats.append(message.heartbeat)
            elif kind == "job_accepted":
                accepted.append(message.job_accepted)
            elif kind == "job_finished":
                finished.append(message.job_finished)
            elif kind == "hello":
                log.warning("worker %s sent a second Hello; ignored", self.inbox.session.worker_id)
        if chunks:
            self.stored.append(await _Chunks.store(conn, self.inbox, chunks))
        for beat in beats:
            self.stored.append(await _Heartbeat.store(conn, self.inbox, beat))
        if accepted or finished:
            self.stored.extend(await _store_results(conn, self.inbox, accepted, finished))

    async def settle(self) -> None:
        for stored in self.stored:
            await stored.settle()

    def answer(self) -> None:
        for stored in self.stored:
            stored.answer(self.inbox)


@dataclass(slots=True)
class _Chunks:
    """A run of output chunks, stored with one statement: acknowledged up to the highest
    seq of each attempt."""

    acked: dict[tuple[str, int], int]

    @classmethod
    async def store(cls, conn: Conn, inbox: Inbox, chunks: list[Any]) -> _Chunks:
        worker_id = inbox.session.worker_id
        await inbox.jobs.store_chunks(conn, [
            {"job_id": uuid.UUID(c.job_id), "attempt": c.attempt, "seq": c.seq,
             "stream": int(c.stream), "data": c.data, "worker_id": worker_id}
            for c in chunks
        ])
        telemetry.LOG_CHUNKS.inc(len(chunks))
        telemetry.LOG_BYTES.inc(sum(len(c.data) for c in chunks))
        acked: dict[tuple[str, int], int] = {}
        for chunk in chunks:
            key = (chunk.job_id, chunk.attempt)
            acked[key] = max(acked.get(key, 0), chunk.seq)
        return cls(acked)

    async def settle(self) -> None:
        pass  # nothing to read: a chunk refused by the fence is acknowledged all the same

    def answer(self, inbox: Inbox) -> None:
        for (job_id, attempt), seq in self.acked.items():
            inbox.hub.wake(job_id)
            inbox.session.ack_logs(job_id, attempt, seq)


@dataclass(slots=True)
class _Heartbeat:
    """A heartbeat: acknowledged while the worker is live on this stream."""

    recorded: Deferred[bool]
    live: bool = False

    @classmethod
    async def store(cls, conn: Conn, inbox: Inbox, beat: agent_pb2.Heartbeat) -> _Heartbeat:
        inbox.session.heard_heartbeat()
        recorded = await inbox.workers.heartbeat(
            conn, inbox.session.worker_id, inbox.server_id,
            MessageToDict(beat.metrics, preserving_proto_field_name=True), beat.running_jobs,
        )
        return cls(recorded)

    async def settle(self) -> None:
        self.live = await self.recorded.result()

    def answer(self, inbox: Inbox) -> None:
        if self.live:
            inbox.session.ack_heartbeat()
            return
        # Declared lost while it was silent (a pause, a partition): end this stream so the
        # agent reconnects and its stale attempts get stopped.
        log.warning("worker %s heartbeats again after being declared lost; closing its stream",
                    inbox.session.worker_id)
        inbox.session.close()


async def _store_results(
    conn: Conn, inbox: Inbox, accepted: list[agent_pb2.JobAccepted],
    finished: list[agent_pb2.JobFinished],
) -> list[_Stored]:
    """A batch's started and ended attempts, in one statement each where it can be: the
    started ones marked RUNNING together; the ended ones no policy looks at (succeeded,
    cancelled) recorded together, an attempt started in the same batch taken through
    RUNNING in the same write; the others (failed, timed out, lost: the retry policy
    decides) one at a time, after the started ones are marked."""
    session = inbox.session
    worker_id = session.worker_id
    actor = f"worker:{worker_id}"
    started = {(a.job_id, a.attempt): a for a in accepted}
    simple: list[tuple[agent_pb2.JobFinished, Ending]] = []
    others: list[tuple[agent_pb2.JobFinished, JobState, int | None, bool]] = []
    merged: set[tuple[str, int]] = set()
    for done in finished:
        outcome = JobState.from_proto(done.outcome)  # a final outcome: validated on arrival
        if outcome is JobState.SUCCEEDED and done.has_exit_code and done.exit_code != 0:
            outcome = JobState.FAILED
        exit_code = done.exit_code if done.has_exit_code else None
        handed_back = outcome is JobState.LOST and session.handed_back()
        key = (done.job_id, done.attempt)
        if outcome in NEVER_RETRIED:
            start = started.get(key)
            if start is not None:
                merged.add(key)
            simple.append((done, Ending(uuid.UUID(done.job_id), done.attempt, outcome, exit_code,
                                        done.reason, start is not None,
                                        start.pid if start is not None else 0)))
        else:
            others.append((done, outcome, exit_code, handed_back))
    stored: list[_Stored] = []
    to_mark = [a for a in accepted if (a.job_id, a.attempt) not in merged]
    if to_mark:
        marked = await inbox.jobs.mark_running_many(
            conn, worker_id, [(uuid.UUID(a.job_id), a.attempt, a.pid) for a in to_mark])
        for a in to_mark:
            result = marked.get((uuid.UUID(a.job_id), a.attempt), (False, None))
            stored.append(_Accepted(a.job_id, a.attempt, Deferred.ready(result)))
    if simple:
        recorded = await inbox.jobs.finish_many(conn, worker_id, [e for _, e in simple], actor)
        for done, ending in simple:
            ok = (ending.job_id, ending.attempt) in recorded
            if ending.started:
                # Its start, recorded with its end; refused with it when stale.
                mark = (True, JobState.RUNNING) if ok else (False, None)
                stored.append(_Accepted(done.job_id, done.attempt, Deferred.ready(mark)))
            stored.append(_Finished(done.job_id, done.attempt, ending.exit_code, False,
                                    Deferred.ready(ending.outcome if ok else None), session))
    for done, outcome, exit_code, handed_back in others:
        state = await inbox.jobs.finish_deferred(
            conn, uuid.UUID(done.job_id), done.attempt, worker_id, outcome, exit_code,
            done.reason, actor, unstarted=outcome is JobState.LOST,
        )
        stored.append(_Finished(done.job_id, done.attempt, exit_code, handed_back, state,
                                session))
    return stored


@dataclass(slots=True)
class _Accepted:
    """The agent started an attempt: RUNNING, unless the attempt is no longer its own."""

    job_id: str
    attempt: int
    marked: Deferred[tuple[bool, JobState | None]]
    stale: bool = False

    async def settle(self) -> None:
        ok, state = await self.marked.result()
        if not ok and state is not JobState.RUNNING:
            log.info("job %s attempt %d is not this worker's to run (%s); stopping it",
                     self.job_id, self.attempt, state,
                     extra={"job": self.job_id, "attempt": self.attempt})
            self.stale = True

    def answer(self, inbox: Inbox) -> None:
        if self.stale:
            inbox.session.cancel(self.job_id, self.attempt, NOT_CURRENT)
        inbox.hub.wake(self.job_id)


@dataclass(slots=True)
class _Finished:
    """An attempt's result: recorded unless stale, acknowledged either way, its slot freed."""

    job_id: str
    attempt: int
    exit_code: int | None
    handed_back: bool
    state: Deferred[JobState | None]
    session: AgentSession

    async def settle(self) -> None:
        state = await self.state.result()
        if state is JobState.SUCCEEDED and not log.isEnabledFor(logging.DEBUG):
            return  # routine, once per job: at debug level (the job's event records it)
        ids = {"job": self.job_id, "attempt": self.attempt,
               "worker": str(self.session.worker_id)}
        if state is not None:
            log.log(logging.DEBUG if state is JobState.SUCCEEDED else logging.INFO,
                    "job %s attempt %d ended %s (exit %s)", self.job_id, self.attempt,
                    state.value, self.exit_code, extra=ids)
            return
        log.info("refused a stale result for job %s attempt %d", self.job_id, self.attempt,
                 extra=ids)
        if self.handed_back:
            # Not a hand-back: an attempt stopped while its agent was away (the lease
            # watchdog of a restarted agent's state dir), reported once it came back.
            self.session.hand_back_refused()

    def answer(self, inbox: Inbox) -> None:
        inbox.session.ack_finished(self.job_id, self.attempt)
        inbox.hub.wake(self.job_id)
        inbox.dispatcher.wake()
