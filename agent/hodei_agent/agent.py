"""The agent as a whole: registration, the session, job dispatch and draining."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable

from hodei_agent import __version__, watchdog
from hodei_agent.batcher import DEFAULT_LIMITS, BatchLimits
from hodei_agent.config import AgentConfig
from hodei_agent.errors import AgentError, CredentialRejected
from hodei_agent.identity import TlsOptions
from hodei_agent.keeperclient import KeeperClient
from hodei_agent.metrics import MetricsSampler
from hodei_agent.outbox import MAX_UNACKED_BYTES, Outbox
from hodei_agent.procgroup import reap_adopted
from hodei_agent.runner import DEFAULT_KILL_GRACE
from hodei_agent.session import Registration, Session
from hodei_agent.statedir import Identity, StateDir
from hodei_agent.supervisor import JobSupervisor
from hodei_api.v1 import agent_pb2, workers_pb2

logger = logging.getLogger(__name__)

DRAIN_CANCEL_REASON = "agent draining"
# After cancelling, how long jobs get beyond their kill grace to hand over their output.
WRAP_UP_TIMEOUT = 10.0
# How long a draining agent waits for the server to acknowledge the last output and results.
ACK_TIMEOUT = 10.0


async def _first_of(*waits: Awaitable[object]) -> None:
    """Return once any of `waits` completes; the others are cancelled."""
    tasks = [asyncio.ensure_future(wait) for wait in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


class Agent:
    """One worker: registers, serves the server's commands until drained or refused."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        limits: BatchLimits = DEFAULT_LIMITS,
        max_unacked_bytes: int = MAX_UNACKED_BYTES,
    ) -> None:
        self._config = config
        self._outbox = Outbox(max_unacked_bytes)
        self._state = StateDir.open(config.state_dir)
        self._keeper = KeeperClient(cgroups=config.cgroups)
        self._supervisor = JobSupervisor(
            self._outbox, self._state, slots=config.slots, limits=limits, keeper=self._keeper
        )
        self._metrics = MetricsSampler()
        self._session = Session(
            config.servers,
            self._outbox,
            hello=self._hello,
            heartbeat=self._heartbeat,
            on_message=self._dispatch,
            tls=(TlsOptions(config.ca_cert, self._state.path)
                 if config.ca_cert is not None else None),
        )
        self._worker_id = ""
        self._registration: Registration | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._last_contact = time.monotonic()
        self._stop = asyncio.Event()
        self._drain_requested = asyncio.Event()
        self._skip_grace = asyncio.Event()
        self._drain_grace = config.drain_grace

    def request_drain(self, grace_seconds: float | None = None) -> None:
        """Start draining (no-op if already draining); `grace_seconds` overrides the config."""
        if self._drain_requested.is_set():
            return
        if grace_seconds is not None:
            self._drain_grace = grace_seconds
        self._drain_requested.set()

    def on_signal(self) -> None:
        """SIGTERM/SIGINT: the first one drains, the next one cancels running jobs at once."""
        if self._drain_requested.is_set():
            logger.warning("worker=%s: second stop signal, cancelling jobs now", self._worker_id)
            self._skip_grace.set()
        else:
            self.request_drain()

    def job_pids(self) -> set[int]:
        """The first process of each running job (for the metrics exporter)."""
        return self._supervisor.job_pids()

    async def run(self) -> int:
        """Run until drained (returns 0); raises `AgentError` when the server refuses us."""
        loop = asyncio.get_running_loop()
        if os.getpid() == 1:
            # PID 1 of a container: orphans whose keeper is gone are re-parented to us.
            loop.add_signal_handler(signal.SIGCHLD, self._reap_adopted)
        try:
            return await self._run()
        finally:
            self._keeper.close()  # it exits once the jobs it still runs have ended
            self._supervisor.close()
            self._state.close()
            if os.getpid() == 1:
                loop.remove_signal_handler(signal.SIGCHLD)

    def _reap_adopted(self) -> None:
        own = {process.pid: process for process in (self._keeper.process, self._watchdog)
               if process is not None}
        adopted = reap_adopted(own)
        if adopted:
            logger.debug("reaped %d adopted process(es)", adopted)

    async def _run(self) -> int:
        try:
            self._keeper.start()  # now rather than on the first job: it takes a moment
        except OSError as exc:
            logger.warning("cannot start the job keeper (%s); trying again for the first job",
                           exc)
        registration = await self._identify()
        if registration is None:
            logger.info("stopped before registering")
            return 0
        self._registration = registration
        self._worker_id = self._supervisor.worker_id = registration.worker_id
        self._last_contact = time.monotonic()
        self._resume_lease(registration)
        # Before the first Hello, which announces them: the attempts a previous process of
        # this agent left running stay this worker's.
        self._supervisor.adopt()
        session = asyncio.create_task(self._session.run(registration, self._stop), name="session")
        drain = asyncio.create_task(self._drain(), name="drain")
        lease = asyncio.create_task(self._watch_lease(registration), name="lease")
        try:
            await asyncio.wait({session, drain}, return_when=asyncio.FIRST_COMPLETED)
            if drain.done():
                drain.result()
                self._stop.set()
                await session
                logger.info("worker=%s: drained, exiting", self._worker_id)
                # The server retires a drained worker: the next start registers anew.
                self._state.forget_identity()
                self._state.drop_lease()
                return 0
            try:
                session.result()  # the session only ends early by raising
            except CredentialRejected:
                self._state.forget_identity()
                raise
            raise AgentError("the session ended without being stopped")
        finally:
            for task in (drain, session, lease):
                task.cancel()
            await asyncio.wait({drain, session, lease})
            await self._stop_jobs()

    async def _identify(self) -> Registration | None:
        """The identity kept in the state dir, else a new one from registering."""
        # Over TLS the worker is its certificate, which a restarted agent does not reload
        # yet: it registers anew (and its previous process's jobs end LOST and are retried).
        tls = self._config.ca_cert is not None
        identity = None if tls else self._state.load_identity()
        if identity is not None:
            logger.info("resuming as worker=%s (from %s)", identity.worker_id, self._state.path)
            return Registration(
                worker_id=identity.worker_id,
                credential=identity.credential,
                heartbeat_interval=identity.heartbeat_interval,
                lease=identity.lease,
            )
        if not self._config.bootstrap_token:
            raise AgentError(f"no identity in {self._state.path} and no bootstrap token")
        registration = await self._session.register(self._register_request(), self._drain_requested)
        if registration is not None and not tls:
            self._state.save_identity(Identity(
                worker_id=registration.worker_id,
                credential=registration.credential,
                heartbeat_interval=registration.heartbeat_interval,
                lease=registration.lease,
            ))
        return registration

    def _resume_lease(self, registration: Registration) -> None:
        """A restarted agent's lease runs from the last contact its previous process had,
        not from now: the server counts from its last stored heartbeat."""
        deadline = self._state.lease_deadline()
        if deadline is None or registration.lease <= 0:
            self._renew_lease()
            return
        last_contact = deadline - registration.lease + registration.heartbeat_interval / 2
        self._last_contact -= max(0.0, time.time() - last_contact)
        self._ensure_watchdog()

    def _renew_lease(self) -> None:
        """Tell the lease watchdog until when the jobs may run without further word: just
        after this agent would stop them itself, before the server may hand them on."""
        registration = self._registration
        if registration is None or registration.lease <= 0:
            return
        self._state.renew_lease(
            time.time() + registration.lease - registration.heartbeat_interval / 2
        )
        self._ensure_watchdog()

    def _ensure_watchdog(self) -> None:
        """Start the lease watchdog of the state dir unless one runs (possibly started by a
        previous process of this agent)."""
        if self._watchdog is not None and self._watchdog.poll() is None:
            return
        if watchdog.running(self._state.path):
            return
        argv = [sys.executable, "-m", "hodei_agent.watchdog", str(self._state.path)]
        if not self._state.persistent:
            argv.append("--remove")  # no agent can come back to a temporary state dir
        self._watchdog = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            start_new_session=True,  # outlives the agent, as the jobs do
        )
        logger.debug("worker=%s: lease watchdog pid=%d", self._worker_id, self._watchdog.pid)

    async def _watch_lease(self, registration: Registration) -> None:
        """Stop the jobs before the server may give them to another worker.

        The server declares this worker lost `lease` seconds after the last heartbeat it
        stored; every stored heartbeat is acknowledged. Hearing nothing for `lease` less one
        heartbeat interval, the agent stops its jobs itself (they end LOST and are retried),
        so an attempt and its replacement never run at the same time.
        """
        if registration.lease <= 0:
            return
        interval = registration.heartbeat_interval
        deadline = max(registration.lease - interval, interval)
        grace = interval / 2
        while True:
            await asyncio.sleep(min(0.5, interval / 2))
            silent = time.monotonic() - self._last_contact
            if silent > deadline and self._supervisor.running:
                logger.warning(
                    "worker=%s: no word from the server for %.1fs; stopping %d job(s) before "
                    "they are given to another worker", self._worker_id, silent,
                    self._supervisor.running,
                )
                reason = (f"lost contact with the server for {silent:.0f}s "
                          f"(lease {registration.lease:g}s)")
                self._supervisor.fence_all(reason, grace)
                self._last_contact = time.monotonic()

    async def _stop_jobs(self) -> None:
        """Leave no job process behind, whatever way the agent is leaving."""
        if not self._supervisor.running:
            return
        logger.warning(
            "worker=%s: stopping %d running job(s)", self._worker_id, self._supervisor.running
        )
        self._supervisor.cancel_all("agent stopping")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DEFAULT_KILL_GRACE + 1.0):
                await self._supervisor.wait_idle()
        await self._supervisor.abort()

    async def _drain(self) -> None:
        await self._drain_requested.wait()
        self._supervisor.draining = True
        logger.info(
            "worker=%s: draining, %d job(s) running, grace %gs",
            self._worker_id,
            self._supervisor.running,
            self._drain_grace,
        )
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._drain_grace):
                await _first_of(self._supervisor.wait_idle(), self._skip_grace.wait())
        if self._supervisor.running:
            self._supervisor.cancel_all(DRAIN_CANCEL_REASON)
            try:
                async with asyncio.timeout(DEFAULT_KILL_GRACE + WRAP_UP_TIMEOUT):
                    await self._supervisor.wait_idle()
            except TimeoutError:
                logger.warning("worker=%s: jobs did not wrap up in time", self._worker_id)
        try:
            async with asyncio.timeout(ACK_TIMEOUT):
                await self._outbox.wait_empty()
        except TimeoutError:
            logger.warning(
                "worker=%s: %d job(s) still unacknowledged by the server",
                self._worker_id,
                len(self._outbox),
            )

    def _dispatch(self, message: agent_pb2.ServerMessage) -> None:
        self._last_contact = time.monotonic()
        kind = message.WhichOneof("msg")
        if kind == "batch":
            for inner in message.batch.messages:
                if inner.WhichOneof("msg") == "batch":
                    logger.warning("worker=%s: ignoring a batch inside a batch", self._worker_id)
                else:
                    self._dispatch(inner)
        elif kind == "run_job":
            self._supervisor.run_job(message.run_job)
        elif kind == "cancel_job":
            self._supervisor.cancel_job(message.cancel_job)
        elif kind == "log_ack":
            self._outbox.ack_chunks(message.log_ack)
        elif kind == "finished_ack":
            ack = message.finished_ack
            if self._outbox.ack_finished(ack):
                self._supervisor.release((ack.job_id, ack.attempt))
        elif kind == "heartbeat_ack":
            self._renew_lease()
        elif kind == "drain":
            logger.info("worker=%s: the server asks to drain", self._worker_id)
            self.request_drain(message.drain.grace_seconds or None)
        else:
            logger.warning("worker=%s: ignoring unknown server message %r", self._worker_id, kind)

    def _capacity(self) -> workers_pb2.Capacity:
        return workers_pb2.Capacity(
            slots=self._config.slots, cpus=self._config.cpus, memory_mb=self._config.memory_mb
        )

    def _register_request(self) -> agent_pb2.RegisterRequest:
        return agent_pb2.RegisterRequest(
            bootstrap_token=self._config.bootstrap_token,
            name=self._config.name,
            hostname=self._config.hostname,
            labels=self._config.labels,
            capacity=self._capacity(),
            agent_version=__version__,
        )

    def _hello(self) -> agent_pb2.Hello:
        return agent_pb2.Hello(
            worker_id=self._worker_id,
            running=[
                agent_pb2.RunningJob(job_id=job_id, attempt=attempt)
                for job_id, attempt in self._outbox.keys()
            ],
            capacity=self._capacity(),
            labels=self._config.labels,
            agent_version=__version__,
        )

    def _heartbeat(self) -> agent_pb2.Heartbeat:
        return agent_pb2.Heartbeat(
            metrics=self._metrics.sample(), running_jobs=self._supervisor.running
        )
