"""WorkerAgentService: registration, certificate renewal and the agent stream's handshake.

Connect authenticates the agent, agrees with it on which of its jobs are still its own and
registers its session; then the stream's two halves run until either ends: the writer
(`writer.py`) sends what the session queues, the inbox (`inbox.py`) stores and answers what
the agent sends.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any, NoReturn

import grpc

from hodei_api.v1 import agent_pb2, agent_pb2_grpc, workers_pb2
from hodei_server.api.agent.inbox import Inbox
from hodei_server.api.agent.writer import writes
from hodei_server.api.status import streaming, unary
from hodei_server.dispatch.dispatcher import Dispatcher
from hodei_server.dispatch.loghub import LogHub
from hodei_server.dispatch.registry import AgentRegistry
from hodei_server.dispatch.session import NOT_CURRENT, AgentSession
from hodei_server.errors import Conflict, InvalidSpec, NotFound, Unauthenticated
from hodei_server.security import audit, pki
from hodei_server.security import tls as tls_mod
from hodei_server.security.authz import CredentialRefused
from hodei_server.security.tls import Tls
from hodei_server.store.jobs import Assignment, JobStore
from hodei_server.store.states import JobState
from hodei_server.store.workers import WorkerStore
from hodei_server.validation import validate_hello, validate_register

log = logging.getLogger(__name__)

HELLO_TIMEOUT = 10.0


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
        inbox = Inbox(session, self.jobs, self.workers, self.hub, self.dispatcher,
                      self.server_id)
        reader = asyncio.create_task(inbox.read(request_iterator),
                                     name=f"agent-reader-{session.worker_id}")
        try:
            async for message in writes(session):
                yield message
            if inbox.refusal:
                raise InvalidSpec(inbox.refusal)
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
        unsent: dict[uuid.UUID, int] = {}
        async with self.jobs.pool.transaction() as conn:
            for job in active:
                key = (job["id"], job["attempt"])
                if key in announced:
                    session.adopt(job["id"], job["attempt"], job["cpus"], job["memory_mb"])
                    continue
                if job["state"] == JobState.ASSIGNED.value:
                    # Never started: its RunJob went down with the previous stream (a
                    # certificate rotation, a network blip). Sent again below, as the same
                    # attempt: requeued, it would count as a second one.
                    unsent[job["id"]] = job["attempt"]
                    continue
                # Reported running, unknown to the agent now: it died with the agent.
                await self.jobs.finish(
                    conn, job["id"], job["attempt"], session.worker_id, JobState.LOST, None,
                    "the agent reconnected without this job", f"worker:{session.worker_id}",
                )
        if unsent:
            specs = await self.jobs.assigned_specs(session.worker_id, list(unsent))
            for job_id, spec in specs.items():
                log.info("worker %s reconnected without job %s attempt %d, which it never "
                         "started; sending it again", session.worker_id, job_id, unsent[job_id])
                await self.dispatcher.send(
                    session, Assignment(job_id, unsent[job_id], session.worker_id, spec))
