"""WorkerAgentService: registration and the long-lived agent stream."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, NoReturn

import grpc
from google.protobuf.json_format import MessageToDict

from hodei_api.v1 import agent_pb2, agent_pb2_grpc, workers_pb2
from hodei_server.api.status import streaming, unary
from hodei_server.dispatch.dispatcher import Dispatcher
from hodei_server.dispatch.loghub import LogHub
from hodei_server.dispatch.registry import AgentRegistry
from hodei_server.dispatch.session import NOT_CURRENT, AgentSession, envelope
from hodei_server.errors import Conflict, InvalidSpec, NotFound, Unauthenticated
from hodei_server.security import audit, pki
from hodei_server.security import tls as tls_mod
from hodei_server.security.authz import CredentialRefused
from hodei_server.security.tls import Tls
from hodei_server.store.db import Conn
from hodei_server.store.jobs import Deferred, JobStore
from hodei_server.store.states import JobState
from hodei_server.store.workers import WorkerStore
from hodei_server.validation import (
    validate_agent_message,
    validate_hello,
    validate_register,
)

log = logging.getLogger(__name__)

HELLO_TIMEOUT = 10.0
MAX_BATCH = 256
# Attempts one stream may have output in flight for at once (a bound on what is tracked).
MAX_OPEN_ATTEMPTS = 16384


# A batch stays well under what an agent accepts in one message (gRPC's default, 4 MiB);
# a message larger than this (a big job spec) goes alone.
MAX_SEND_BATCH_BYTES = 1024 * 1024
COALESCE_SECONDS = 0.002


def _more_of(
    outbox: asyncio.Queue[agent_pb2.ServerMessage | None], first: agent_pb2.ServerMessage
) -> tuple[agent_pb2.ServerMessage, agent_pb2.ServerMessage | None, bool]:
    """`first` and whatever else is queued already, as one message to write (a write per
    message costs more than the message): (that message, a message taken that did not fit,
    whether the stream is to close after them)."""
    if outbox.empty():
        return first, None, False
    messages = [first]
    size = first.ByteSize()
    while not outbox.empty():
        message = outbox.get_nowait()
        if message is None:
            return envelope(messages), None, True
        size += message.ByteSize()
        if size > MAX_SEND_BATCH_BYTES:
            return envelope(messages), message, False
        messages.append(message)
    return envelope(messages), None, False


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
        tls: Tls | None = None,
    ) -> None:
        self.jobs = jobs
        self.workers = workers
        self.registry = registry
        self.dispatcher = dispatcher
        self.hub = hub
        self.server_id = server_id
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_ttl = heartbeat_ttl
        self.tls = tls
        # The bound mutual-TLS port (set once bound); 0 without TLS.
        self.agent_port = 0

    async def _refuse(
        self, context: grpc.aio.ServicerContext, action: str, actor: str, reason: str,
        detail: dict[str, Any] | None = None,
    ) -> NoReturn:
        """Record the refusal in the audit log, then refuse the call (UNAUTHENTICATED)."""
        log.warning("refused %s by %s: %s", action, actor, reason)
        await audit.record_now(self.workers.pool, actor, action, allowed=False,
                               detail={"reason": reason, "peer": context.peer(),
                                       **(detail or {})})
        raise CredentialRefused(reason, actor)

    def _issued(self, issued: pki.Issued) -> agent_pb2.IssuedCertificate:
        assert self.tls is not None and self.tls.ca_cert is not None
        lifetime = (issued.not_after - dt.datetime.now(dt.UTC)).total_seconds()
        return agent_pb2.IssuedCertificate(
            certificate_pem=issued.cert_pem.decode(), ca_chain_pem=self.tls.ca_cert.decode(),
            lifetime_seconds=max(lifetime, 0.0),
        )

    @unary
    async def Register(
        self, request: agent_pb2.RegisterRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.RegisterResponse:
        name = validate_register(request)
        worker_id = uuid.uuid4()
        issued: pki.Issued | None = None
        if self.tls is not None:
            if not request.csr_pem:
                raise InvalidSpec("this server speaks TLS: registration needs a CSR "
                                  "(an agent of this version sends one when given --ca-cert)")
            if not self.tls.can_sign:
                raise Conflict("this server cannot issue agent certificates: set ca_key and "
                               "ca_cert in its configuration")
            # Checked before the token is consumed: a bad CSR does not burn the token.
            try:
                issued = self.tls.sign(request.csr_pem.encode(), worker_id)
            except InvalidSpec as exc:
                await audit.record_now(self.workers.pool, "anonymous", "worker.register",
                                       allowed=False, detail={"reason": exc.message,
                                                              "name": name})
                raise
        try:
            _, credential = await self.workers.register(
                request.bootstrap_token, name, request.hostname, dict(request.labels),
                request.capacity, request.agent_version, worker_id=worker_id,
                certificate=(issued.serial, issued.not_after) if issued else None,
            )
        except Unauthenticated as exc:
            await self._refuse(context, "worker.register", "anonymous", exc.message,
                               {"name": name})
        log.info("worker %s (%s) registered%s", worker_id, name,
                 f" with certificate {issued.serial}" if issued else "")
        return agent_pb2.RegisterResponse(
            worker_id=str(worker_id), credential=credential,
            heartbeat_interval_seconds=self.heartbeat_interval,
            lease_seconds=self.heartbeat_ttl,
            certificate=self._issued(issued) if issued else None,
            agent_port=self.agent_port,
        )

    async def _peer(
        self, context: grpc.aio.ServicerContext, action: str, claimed: str
    ) -> pki.PeerIdentity | None:
        """With TLS, the identity of the caller's client certificate, checked against the
        worker id it claims and the serial on record; CredentialRefused otherwise."""
        if self.tls is None:
            return None
        cert = tls_mod.peer_certificate(context)
        if cert is None:
            await self._refuse(context, action, "anonymous",
                               f"{action} needs the worker's client certificate: agents "
                               f"stream on the mutual-TLS port {self.agent_port}")
        peer = pki.worker_identity(cert)
        if peer is None:
            await self._refuse(context, action, "anonymous",
                               "the client certificate names no worker")
        if claimed and claimed != peer.worker_id:
            await self._refuse(context, action, f"worker:{peer.worker_id}",
                               f"the client certificate is worker {peer.worker_id}'s, "
                               f"not {claimed}'s", {"claimed": claimed})
        try:
            serials = await self.workers.certificate_serials(uuid.UUID(peer.worker_id))
        except NotFound:
            serials = ()
        if peer.serial not in serials:
            await self._refuse(context, action, f"worker:{peer.worker_id}",
                               "this client certificate was replaced or revoked",
                               {"serial": peer.serial})
        return peer

    @unary
    async def RenewCertificate(
        self, request: agent_pb2.RenewCertificateRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.RenewCertificateResponse:
        if self.tls is None:
            raise Conflict("this server does not speak TLS")
        if not self.tls.can_sign:
            raise Conflict("this server cannot issue agent certificates: set ca_key and "
                           "ca_cert in its configuration")
        peer = await self._peer(context, "worker.renew_certificate", "")
        assert peer is not None
        worker_id = uuid.UUID(peer.worker_id)
        issued = self.tls.sign(request.csr_pem.encode(), worker_id)
        await self.workers.renew_certificate(worker_id, peer.serial, issued.serial,
                                             issued.not_after)
        log.info("worker %s renewed its certificate (%s -> %s)", worker_id, peer.serial,
                 issued.serial)
        return agent_pb2.RenewCertificateResponse(certificate=self._issued(issued))

    @streaming
    async def Connect(
        self,
        request_iterator: AsyncIterator[agent_pb2.AgentMessage],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[agent_pb2.ServerMessage]:
        metadata = dict(context.invocation_metadata() or ())
        token = str(metadata.get("authorization", "")).removeprefix("Bearer ").strip()
        claimed = str(metadata.get("x-hodei-worker-id", ""))
        # Refused (and audited) by _peer, Unauthenticated, or the database is unavailable.
        await self._peer(context, "worker.connect", claimed or "(none)")
        row = await self.workers.authenticate(claimed, token)
        try:
            first = await asyncio.wait_for(anext(aiter(request_iterator)), HELLO_TIMEOUT)
        except (TimeoutError, StopAsyncIteration):
            raise InvalidSpec("expected Hello first") from None
        # A message that is not even valid raises InvalidSpec (hodei_server.api.interceptors).
        if first.WhichOneof("msg") != "hello":
            raise InvalidSpec("expected Hello first")
        hello = first.hello
        try:
            validate_hello(hello)
        except InvalidSpec as exc:
            log.warning("worker %s: refused its Hello: %s", row["id"], exc.message)
            raise
        # Labels are fixed at registration, where the bootstrap token's grant overrides what
        # the agent asked for: a worker can't claim others (to attract jobs selecting them).
        labels = dict(row["labels"])
        if hello.labels and dict(hello.labels) != labels:
            log.warning("worker %s: its Hello names labels %s, but its labels are the ones it "
                        "registered with: %s", row["id"], dict(hello.labels), labels)
        capacity = hello.capacity if hello.capacity.slots else workers_pb2.Capacity(
            slots=row["slots"], cpus=row["cpus"], memory_mb=row["memory_mb"]
        )
        session = AgentSession(
            worker_id=row["id"], name=row["name"], provider=row["provider"], labels=labels,
            slots=capacity.slots, cpus=capacity.cpus, memory_mb=capacity.memory_mb,
            heartbeat_ttl=self.heartbeat_ttl,
        )
        # A failure here (the database, mostly) ends the call: the agent retries with backoff.
        await self.workers.connected(row["id"], self.server_id, labels, capacity,
                                     hello.agent_version)
        await self._reattach(session, hello)
        self.registry.add(session)
        log.info("worker %s (%s) connected with %d slots", session.worker_id, session.name,
                 session.slots)
        self.dispatcher.wake()
        stream_check = _StreamCheck()
        reader = asyncio.create_task(
            self._read(session, request_iterator, stream_check),
            name=f"agent-reader-{session.worker_id}",
        )
        try:
            carried: agent_pb2.ServerMessage | None = None
            loop = asyncio.get_running_loop()
            last_write = 0.0
            while True:
                message = carried if carried is not None else await session.outbox.get()
                if message is None:
                    break
                # Writes closer together than COALESCE_SECONDS (a busy agent) wait for the
                # rest of that time, so that what comes meanwhile shares the write.
                pause = last_write + COALESCE_SECONDS - loop.time()
                if pause > 0:
                    await asyncio.sleep(pause)
                batch, carried, closing = _more_of(session.outbox, message)
                yield batch
                last_write = loop.time()
                if closing:
                    break
            if stream_check.refusal:
                raise InvalidSpec(stream_check.refusal)
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
            session.cancel(job_id, attempt, NOT_CURRENT)
        async with self.jobs.pool.transaction() as conn:
            for job in active:
                key = (job["id"], job["attempt"])
                if key in announced:
                    session.adopt(job["id"], job["attempt"], job["cpus"], job["memory_mb"])
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
        self, session: AgentSession, request_iterator: AsyncIterator[agent_pb2.AgentMessage],
        stream_check: _StreamCheck,
    ) -> None:
        inbox: asyncio.Queue[agent_pb2.AgentMessage | None] = asyncio.Queue()
        processor = asyncio.create_task(
            self._process(session, inbox), name=f"agent-processor-{session.worker_id}"
        )
        try:
            async for message in request_iterator:
                # A message that breaks the contract ends the stream (INVALID_ARGUMENT);
                # what came before it is still stored and acknowledged.
                for each in stream_check.check(message):
                    inbox.put_nowait(each)
        except InvalidSpec as exc:
            stream_check.refusal = exc.message
            log.warning("worker %s: refused a message, closing its stream: %s",
                        session.worker_id, exc.message)
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
        """Handle the agent's messages in order, a drained batch at a time.

        Each statement commits by itself (no BEGIN and COMMIT around the batch: they cost
        the server more than the extra commits cost PostgreSQL). Nothing needs the batch to
        be atomic: if it fails half-way, nothing of it is acknowledged, the agent resends it
        all, and what was already stored is refused or ignored as a duplicate (the fences,
        idempotent chunk inserts). Acknowledgements and wake-ups go out only after the
        batch is stored, so an agent never forgets something the database does not hold.
        """
        while True:
            pending = [await inbox.get()]
            while len(pending) < MAX_BATCH and not inbox.empty():
                pending.append(inbox.get_nowait())
            messages = [m for m in pending if m is not None]
            if messages:
                after: list[Callable[[], None]] = []
                try:
                    settles: list[Callable[[], Awaitable[None]]] = []
                    async with self.jobs.pool.connection() as conn:
                        await self._apply(conn, session, messages, after, settles)
                        for settle in settles:  # stored: read what each statement did
                            await settle()
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
        after: list[Callable[[], None]], settles: list[Callable[[], Awaitable[None]]],
    ) -> None:
        """Queue each message's statements; `settles`, run in order once the batch is
        committed, read their outcomes and add the follow-ups to `after`."""
        chunks: list[Any] = []
        for message in messages:
            kind = message.WhichOneof("msg")
            if kind == "log_chunk":
                chunks.append(message.log_chunk)
                continue
            if chunks:
                await self._store_chunks(conn, session, chunks, after, settles)
                chunks = []
            if kind == "heartbeat":
                session.heard_heartbeat()
                live = await self.workers.heartbeat(
                    conn, session.worker_id, self.server_id,
                    MessageToDict(message.heartbeat.metrics, preserving_proto_field_name=True),
                    message.heartbeat.running_jobs,
                )
                settles.append(functools.partial(self._heartbeat_settled, session, live, after))
            elif kind == "job_accepted":
                await self._accepted(conn, session, message.job_accepted, after, settles)
            elif kind == "job_finished":
                await self._finished(conn, session, message.job_finished, after, settles)
            elif kind == "hello":
                log.warning("worker %s sent a second Hello; ignored", session.worker_id)
        if chunks:
            await self._store_chunks(conn, session, chunks, after, settles)

    async def _heartbeat_settled(
        self, session: AgentSession, live: Deferred[bool], after: list[Callable[[], None]]
    ) -> None:
        if await live.result():
            after.append(session.ack_heartbeat)
        else:
            # Declared lost while it was silent (a pause, a partition): end this
            # stream so the agent reconnects and its stale attempts get stopped.
            log.warning("worker %s heartbeats again after being declared lost; "
                        "closing its stream", session.worker_id)
            after.append(session.close)

    async def _store_chunks(
        self, conn: Conn, session: AgentSession, batch: list[Any],
        after: list[Callable[[], None]], settles: list[Callable[[], Awaitable[None]]],
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

        async def settle() -> None:  # in order with the batch's other messages
            for (job_id, attempt), seq in acked.items():
                after.append(functools.partial(self._acked, session, job_id, attempt, seq))

        settles.append(settle)

    def _acked(self, session: AgentSession, job_id: str, attempt: int, seq: int) -> None:
        self.hub.wake(job_id)
        session.ack_logs(job_id, attempt, seq)

    async def _accepted(
        self, conn: Conn, session: AgentSession, accepted: agent_pb2.JobAccepted,
        after: list[Callable[[], None]], settles: list[Callable[[], Awaitable[None]]],
    ) -> None:
        job_id = uuid.UUID(accepted.job_id)
        marked = await self.jobs.mark_running_deferred(
            conn, job_id, accepted.attempt, session.worker_id, accepted.pid)

        async def settle() -> None:
            ok, state = await marked.result()
            if not ok and state is not JobState.RUNNING:
                log.info("job %s attempt %d is not this worker's to run (%s); stopping it",
                         job_id, accepted.attempt, state)
                after.append(lambda: session.cancel(accepted.job_id, accepted.attempt,
                                                    NOT_CURRENT))
            after.append(lambda: self.hub.wake(accepted.job_id))

        settles.append(settle)

    async def _finished(
        self, conn: Conn, session: AgentSession, done: agent_pb2.JobFinished,
        after: list[Callable[[], None]], settles: list[Callable[[], Awaitable[None]]],
    ) -> None:
        job_id = uuid.UUID(done.job_id)
        outcome = JobState.from_proto(done.outcome)  # a final outcome: validated on arrival
        if outcome is JobState.SUCCEEDED and done.has_exit_code and done.exit_code != 0:
            outcome = JobState.FAILED
        exit_code = done.exit_code if done.has_exit_code else None
        handed_back = outcome is JobState.LOST and session.handed_back()
        finished = await self.jobs.finish_deferred(
            conn, job_id, done.attempt, session.worker_id, outcome, exit_code,
            done.reason, f"worker:{session.worker_id}",
            unstarted=outcome is JobState.LOST,
        )

        async def settle() -> None:
            state = await finished.result()
            if state is None:
                log.info("refused a stale result for job %s attempt %d", job_id, done.attempt)
                if handed_back:
                    # Not a hand-back: an attempt stopped while its agent was away (the
                    # lease watchdog of a restarted agent's state dir), reported once it
                    # came back.
                    session.hand_back_refused()
            else:
                log.debug("job %s attempt %d ended %s (exit %s)", job_id, done.attempt,
                          state.value, exit_code)
            def done_actions() -> None:
                session.ack_finished(done.job_id, done.attempt)
                self.hub.wake(done.job_id)
                self.dispatcher.wake()

            after.append(done_actions)

        settles.append(settle)
