"""WorkerAgentService: registration and the long-lived agent stream."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict

from hodei_api.v1 import agent_pb2, agent_pb2_grpc, workers_pb2
from hodei_server.agents import AgentRegistry, AgentSession
from hodei_server.db import Conn
from hodei_server.dispatcher import Dispatcher
from hodei_server.errors import InvalidSpec
from hodei_server.jobstore import JobStore
from hodei_server.loghub import LogHub
from hodei_server.servicers.common import abort_with, unary
from hodei_server.servicers.jobs import cancel_message
from hodei_server.states import JobState
from hodei_server.validation import validate_labels
from hodei_server.workerstore import WorkerStore

log = logging.getLogger(__name__)

HELLO_TIMEOUT = 10.0
_HEARTBEAT_ACK = agent_pb2.ServerMessage(heartbeat_ack=agent_pb2.HeartbeatAck())
MAX_BATCH = 256
_OUTCOMES = {
    JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.TIMED_OUT, JobState.LOST,
}


def _validate_capacity(capacity: workers_pb2.Capacity) -> None:
    if not 1 <= capacity.slots <= 4096:
        raise InvalidSpec("capacity.slots must be between 1 and 4096")
    if capacity.cpus < 0 or capacity.memory_mb < 0:
        raise InvalidSpec("capacity.cpus and capacity.memory_mb must be >= 0")


class AgentServicer(agent_pb2_grpc.WorkerAgentServiceServicer):
    def __init__(
        self,
        jobs: JobStore,
        workers: WorkerStore,
        registry: AgentRegistry,
        dispatcher: Dispatcher,
        hub: LogHub,
        server_id: str,
        heartbeat_interval: float,
        heartbeat_ttl: float,
    ) -> None:
        self.jobs = jobs
        self.workers = workers
        self.registry = registry
        self.dispatcher = dispatcher
        self.hub = hub
        self.server_id = server_id
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_ttl = heartbeat_ttl

    @unary
    async def Register(
        self, request: agent_pb2.RegisterRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.RegisterResponse:
        name = request.name.strip()
        if not name or len(name) > 253 or any(ord(c) < 32 for c in name):
            raise InvalidSpec("worker name must be 1-253 printable characters")
        validate_labels(dict(request.labels), "labels")
        _validate_capacity(request.capacity)
        worker_id, credential = await self.workers.register(
            request.bootstrap_token, name, request.hostname[:253], dict(request.labels),
            request.capacity, request.agent_version[:64],
        )
        log.info("worker %s (%s) registered", worker_id, name)
        return agent_pb2.RegisterResponse(
            worker_id=str(worker_id), credential=credential,
            heartbeat_interval_seconds=self.heartbeat_interval,
            lease_seconds=self.heartbeat_ttl,
        )

    async def Connect(
        self,
        request_iterator: AsyncIterator[agent_pb2.AgentMessage],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[agent_pb2.ServerMessage]:
        metadata = dict(context.invocation_metadata() or ())
        token = str(metadata.get("authorization", "")).removeprefix("Bearer ").strip()
        try:
            row = await self.workers.authenticate(str(metadata.get("x-hodei-worker-id", "")),
                                                  token)
        except Exception as exc:  # Unauthenticated, or the database is unavailable
            await abort_with(context, exc, "Connect")
            return
        try:
            first = await asyncio.wait_for(anext(aiter(request_iterator)), HELLO_TIMEOUT)
        except (TimeoutError, StopAsyncIteration):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "expected Hello first")
            return
        if first.WhichOneof("msg") != "hello":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "expected Hello first")
            return
        hello = first.hello
        labels = dict(hello.labels) or dict(row["labels"])
        capacity = hello.capacity if hello.capacity.slots else workers_pb2.Capacity(
            slots=row["slots"], cpus=row["cpus"], memory_mb=row["memory_mb"]
        )
        session = AgentSession(
            worker_id=row["id"], name=row["name"], provider=row["provider"], labels=labels,
            slots=capacity.slots, cpus=capacity.cpus, memory_mb=capacity.memory_mb,
            heartbeat_ttl=self.heartbeat_ttl,
        )
        try:
            await self.workers.connected(row["id"], self.server_id, labels, capacity,
                                         hello.agent_version)
            await self._reattach(session, hello)
        except Exception as exc:  # the database, mostly: the agent retries with backoff
            await abort_with(context, exc, "Connect")
            return
        self.registry.add(session)
        log.info("worker %s (%s) connected with %d slots", session.worker_id, session.name,
                 session.slots)
        self.dispatcher.wake()
        reader = asyncio.create_task(
            self._read(session, request_iterator), name=f"agent-reader-{session.worker_id}"
        )
        try:
            while True:
                message = await session.outbox.get()
                if message is None:
                    break
                yield message
        finally:
            reader.cancel()
            if self.registry.remove(session):
                state = "TERMINATED" if session.draining else "DISCONNECTED"
                try:
                    await asyncio.shield(
                        self.workers.disconnected(session.worker_id, self.server_id, state)
                    )
                except Exception as exc:
                    log.warning("could not record worker %s disconnect: %s",
                                session.worker_id, exc)
            log.info("worker %s (%s) disconnected", session.worker_id, session.name)

    async def _reattach(self, session: AgentSession, hello: agent_pb2.Hello) -> None:
        """Agree with a (re)connecting agent on which of its jobs are still its own."""
        announced = {(uuid.UUID(r.job_id), r.attempt) for r in hello.running}
        active = await self.jobs.active_jobs_of([session.worker_id])
        current = {(job["id"], job["attempt"]) for job in active}
        for job_id, attempt in sorted(announced - current):
            # Handed to someone else (or finished) while this agent was away: fence it.
            log.info("worker %s still runs job %s attempt %d, which is no longer its own; "
                     "stopping it", session.worker_id, job_id, attempt)
            session.send(cancel_message(str(job_id), attempt, "this attempt is no longer current"))
        async with self.jobs.pool.connection() as conn:
            for job in active:
                key = (job["id"], job["attempt"])
                if key in announced:
                    session.reserve(job["id"], job["attempt"], job["cpus"], job["memory_mb"])
                    continue
                # The agent does not know this attempt: it never started it, or it died
                # with the agent. An unstarted one goes back to the queue at no cost.
                never_started = job["state"] == JobState.ASSIGNED.value
                await self.jobs.finish(
                    conn, job["id"], job["attempt"], session.worker_id, JobState.LOST, None,
                    "the agent reconnected without this job",
                    f"worker:{session.worker_id}", unstarted=never_started,
                )

    async def _read(
        self, session: AgentSession, request_iterator: AsyncIterator[agent_pb2.AgentMessage]
    ) -> None:
        inbox: asyncio.Queue[agent_pb2.AgentMessage | None] = asyncio.Queue()
        processor = asyncio.create_task(
            self._process(session, inbox), name=f"agent-processor-{session.worker_id}"
        )
        try:
            async for message in request_iterator:
                inbox.put_nowait(message)
        except (grpc.aio.AioRpcError, asyncio.CancelledError):
            pass
        finally:
            inbox.put_nowait(None)
            try:
                await asyncio.shield(processor)
            except Exception:
                log.exception("processing messages of worker %s failed", session.worker_id)
            session.close()

    async def _process(
        self, session: AgentSession, inbox: asyncio.Queue[agent_pb2.AgentMessage | None]
    ) -> None:
        """Handle the agent's messages in order, each drained batch in one transaction.

        Acknowledgements and wake-ups go out only after the commit, so an agent never
        forgets something the database does not hold yet.
        """
        while True:
            pending = [await inbox.get()]
            while len(pending) < MAX_BATCH and not inbox.empty():
                pending.append(inbox.get_nowait())
            messages = [m for m in pending if m is not None]
            if messages:
                after: list[Callable[[], None]] = []
                try:
                    async with self.jobs.pool.connection() as conn:
                        await self._apply(conn, session, messages, after)
                except Exception as exc:
                    # Nothing of this batch was acknowledged: end the stream, and the agent
                    # reconnects and resends it (stored chunks are idempotent).
                    log.warning("worker %s: could not store its messages (%s); closing its "
                                "stream so it resends them", session.worker_id,
                                str(exc).strip().splitlines()[0] if str(exc).strip() else exc)
                    session.close()
                    return
                for action in after:
                    action()
            if len(messages) < len(pending):
                return

    async def _apply(
        self, conn: Conn, session: AgentSession, messages: list[agent_pb2.AgentMessage],
        after: list[Callable[[], None]],
    ) -> None:
        chunks: list[Any] = []
        for message in messages:
            kind = message.WhichOneof("msg")
            if kind == "log_chunk":
                chunks.append(message.log_chunk)
                continue
            if chunks:
                await self._store_chunks(conn, session, chunks, after)
                chunks = []
            if kind == "heartbeat":
                session.last_heartbeat = time.monotonic()
                live = await self.workers.heartbeat(
                    conn, session.worker_id, self.server_id,
                    MessageToDict(message.heartbeat.metrics, preserving_proto_field_name=True),
                    message.heartbeat.running_jobs,
                )
                if live:
                    after.append(functools.partial(session.send, _HEARTBEAT_ACK))
                else:
                    # Declared lost while it was silent (a pause, a partition): end this
                    # stream so the agent reconnects and its stale attempts get stopped.
                    log.warning("worker %s heartbeats again after being declared lost; "
                                "closing its stream", session.worker_id)
                    after.append(session.close)
            elif kind == "job_accepted":
                await self._accepted(conn, session, message.job_accepted, after)
            elif kind == "job_finished":
                await self._finished(conn, session, message.job_finished, after)
            elif kind == "hello":
                log.warning("worker %s sent a second Hello; ignored", session.worker_id)
        if chunks:
            await self._store_chunks(conn, session, chunks, after)

    async def _store_chunks(
        self, conn: Conn, session: AgentSession, batch: list[Any],
        after: list[Callable[[], None]],
    ) -> None:
        rows = [
            {"job_id": uuid.UUID(c.job_id), "attempt": c.attempt, "seq": c.seq,
             "stream": int(c.stream), "data": c.data, "worker_id": session.worker_id}
            for c in batch
        ]
        await self.jobs.store_chunks(conn, rows)
        acked: dict[tuple[str, int], int] = {}
        for chunk in batch:
            key = (chunk.job_id, chunk.attempt)
            acked[key] = max(acked.get(key, 0), chunk.seq)
        for (job_id, attempt), seq in acked.items():
            ack = agent_pb2.ServerMessage(
                log_ack=agent_pb2.LogAck(job_id=job_id, attempt=attempt, up_to_seq=seq)
            )
            after.append(functools.partial(self._acked, session, job_id, ack))

    def _acked(self, session: AgentSession, job_id: str, ack: agent_pb2.ServerMessage) -> None:
        self.hub.wake(job_id)
        session.send(ack)

    async def _accepted(
        self, conn: Conn, session: AgentSession, accepted: agent_pb2.JobAccepted,
        after: list[Callable[[], None]],
    ) -> None:
        job_id = uuid.UUID(accepted.job_id)
        if not await self.jobs.mark_running(conn, job_id, accepted.attempt, session.worker_id,
                                            accepted.pid):
            state = await self.jobs.state_in(conn, job_id)
            if state is not JobState.RUNNING:
                log.info("job %s attempt %d is not this worker's to run (%s); stopping it",
                         job_id, accepted.attempt, state)
                stop = cancel_message(accepted.job_id, accepted.attempt,
                                      "this attempt is no longer current")
                after.append(lambda: session.send(stop))
        after.append(lambda: self.hub.wake(accepted.job_id))

    async def _finished(
        self, conn: Conn, session: AgentSession, done: agent_pb2.JobFinished,
        after: list[Callable[[], None]],
    ) -> None:
        job_id = uuid.UUID(done.job_id)
        try:
            outcome = JobState.from_proto(done.outcome)
        except ValueError:
            outcome = JobState.FAILED
        if outcome not in _OUTCOMES:
            outcome = JobState.FAILED
        if outcome is JobState.SUCCEEDED and done.has_exit_code and done.exit_code != 0:
            outcome = JobState.FAILED
        exit_code = done.exit_code if done.has_exit_code else None
        handed_back = outcome is JobState.LOST and not session.draining
        if handed_back:
            # An agent hands a job back only while it drains: send it nothing more.
            session.draining = True
        state = await self.jobs.finish(
            conn, job_id, done.attempt, session.worker_id, outcome, exit_code,
            done.reason[:4096], f"worker:{session.worker_id}",
            unstarted=outcome is JobState.LOST,
        )
        if state is None:
            log.info("refused a stale result for job %s attempt %d", job_id, done.attempt)
            if handed_back:
                # Not a hand-back: an attempt stopped while its agent was away (the lease
                # watchdog of a restarted agent's state dir), reported once it came back.
                session.draining = False
        else:
            log.debug("job %s attempt %d ended %s (exit %s)", job_id, done.attempt,
                      state.value, exit_code)
        ack = agent_pb2.ServerMessage(
            finished_ack=agent_pb2.FinishedAck(job_id=done.job_id, attempt=done.attempt)
        )

        def done_actions() -> None:
            session.send(ack)
            session.release(job_id, done.attempt)
            self.hub.wake(done.job_id)
            self.dispatcher.wake()

        after.append(done_actions)
