"""The agent's conversation with the server: Register once, then the Connect stream.

The stream is kept up for the life of the agent: when it drops, the session fails over
through the configured servers with backoff, and every new stream starts with `Hello` and
then resends whatever the outbox still owes (the server stores chunks idempotently).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio

from hodei_agent.backoff import Backoff
from hodei_agent.envelope import describe_failure, envelopes, write_message
from hodei_agent.errors import AgentError, CredentialRejected, RegistrationRejected
from hodei_agent.identity import Identity, PendingKey, TlsOptions, speaks_tls
from hodei_agent.outbox import Outbox
from hodei_api.v1 import agent_pb2, agent_pb2_grpc

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0
REGISTER_TIMEOUT = 10.0
CLOSE_TIMEOUT = 2.0
# A stream that stayed up this long proves the server healthy: the backoff starts over.
STABLE_AFTER = 10.0
DEFAULT_HEARTBEAT_INTERVAL = 10.0
MIN_HEARTBEAT_INTERVAL = 0.5
SEND_BATCH = 64
COALESCE_SECONDS = 0.004  # as the server's (hodei_server/api/agent/writer.py)

# Keepalive pings find a dead connection the stream itself would not notice (the server
# sends nothing unprompted). The Hodei server accepts pings every 5 s or more
# (grpc.http2.min_ping_interval_without_data_ms), so 30 s is well within its policy.
CHANNEL_OPTIONS = (
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 20_000),
)

_REGISTER_FATAL = frozenset(
    {
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,  # e.g. a TLS server that cannot sign
    }
)
_CONNECT_FATAL = frozenset({grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED})
_NETWORK_ERRORS = (grpc.RpcError, asyncio.InvalidStateError, TimeoutError)


@dataclass(frozen=True)
class Registration:
    """Who the server says this agent is."""

    worker_id: str
    credential: str
    heartbeat_interval: float
    # How long the server waits for a heartbeat before it gives this worker's jobs to
    # others; 0 when the server sets no lease.
    lease: float = 0.0
    # With TLS: the port of the server's mutual-TLS endpoint for streams and renewals.
    agent_port: int = 0



class _StreamLost(AgentError):
    """The stream to the server could not be opened or was lost."""


async def _stopped_within(stop: asyncio.Event, delay: float) -> bool:
    """Sleep up to `delay` seconds; True (early) if `stop` is set meanwhile."""
    try:
        async with asyncio.timeout(delay):
            await stop.wait()
    except TimeoutError:
        return False
    return True


class Session:
    """Registers the agent and keeps its Connect stream up until stopped."""

    def __init__(
        self,
        servers: Sequence[str],
        outbox: Outbox,
        *,
        hello: Callable[[], agent_pb2.Hello],
        heartbeat: Callable[[], agent_pb2.Heartbeat],
        on_message: Callable[[agent_pb2.ServerMessage], None],
        backoff: Backoff | None = None,
        tls: TlsOptions | None = None,
    ) -> None:
        if not servers:
            raise ValueError("a session needs at least one server")
        self._servers = tuple(servers)
        self._outbox = outbox
        self._hello = hello
        self._heartbeat = heartbeat
        self._on_message = on_message
        self._backoff = backoff or Backoff()
        self._current = 0
        self._failed_in_round = 0
        self._tls = tls
        # The current TLS identity (None in plaintext); renewals replace it.
        self.identity: Identity | None = None
        # Set when a renewed certificate should replace the one the stream was opened with.
        self._rotate = asyncio.Event()

    @property
    def address(self) -> str:
        """The server tried (or talked to) last."""
        return self._servers[self._current]

    def _fail_over(self, failure: str) -> float:
        """Move on to the next server; return how long to wait before trying it.

        Every server is tried once in turn; only after a whole round failed does the agent
        back off.
        """
        failed = self.address
        self._current = (self._current + 1) % len(self._servers)
        self._failed_in_round += 1
        delay = 0.0
        if self._failed_in_round >= len(self._servers):
            self._failed_in_round = 0
            delay = self._backoff.next_delay()
        logger.warning("%s: %s; trying %s in %.1fs", failed, failure, self.address, delay)
        return delay

    def _healthy(self) -> None:
        self._failed_in_round = 0
        self._backoff.reset()

    def _register_channel(self, address: str) -> grpc.aio.Channel:
        if self._tls is None:
            return grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
        return self._tls.register_channel(address, CHANNEL_OPTIONS)

    def _stream_channel(self, address: str, registration: Registration) -> grpc.aio.Channel:
        if self._tls is None:
            return grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
        assert self.identity is not None
        if self.identity.expired:  # away longer than it lived: only a new token helps now
            raise CredentialRejected("the client certificate expired before it could be "
                                     "renewed; register again with a new bootstrap token")
        return self._tls.stream_channel(address, registration.agent_port, self.identity,
                                        CHANNEL_OPTIONS)

    async def register(
        self, request: agent_pb2.RegisterRequest, stop: asyncio.Event
    ) -> Registration | None:
        """Register until it works; None if stopped first. A rejection is final."""
        pending = PendingKey(request.name) if self._tls is not None else None
        if pending is not None:
            request.csr_pem = pending.csr_pem
        while not stop.is_set():
            address = self.address
            try:
                async with self._register_channel(address) as channel:
                    stub = agent_pb2_grpc.WorkerAgentServiceStub(channel)
                    response = await stub.Register(request, timeout=REGISTER_TIMEOUT)
            except grpc.aio.AioRpcError as exc:
                if exc.code() in _REGISTER_FATAL:
                    raise RegistrationRejected(
                        f"server {address} rejected the registration: {describe_failure(exc)}"
                    ) from None
                if self._tls is None and await asyncio.to_thread(speaks_tls, address):
                    raise RegistrationRejected(
                        f"server {address} speaks TLS: pass --ca-cert PATH (the CA that "
                        "signed its certificate)") from None
                failure = f"registration failed: {describe_failure(exc)}"
            else:
                self._healthy()
                interval = response.heartbeat_interval_seconds or DEFAULT_HEARTBEAT_INTERVAL
                if pending is not None:
                    assert self._tls is not None
                    if not response.HasField("certificate") or not response.agent_port:
                        raise RegistrationRejected(
                            f"server {address} issued no client certificate: is it configured "
                            "for TLS (tls_cert, ca_key, ca_cert)?")
                    self.identity = pending.accept(response.certificate, self._tls.state_dir)
                logger.info("registered at %s as worker=%s%s", address, response.worker_id,
                            " with a client certificate" if pending is not None else "")
                return Registration(
                    worker_id=response.worker_id,
                    credential=response.credential,
                    heartbeat_interval=max(interval, MIN_HEARTBEAT_INTERVAL),
                    lease=max(response.lease_seconds, 0.0),
                    agent_port=response.agent_port,
                )
            if await _stopped_within(stop, self._fail_over(failure)):
                break
        return None

    async def run(self, registration: Registration, stop: asyncio.Event) -> None:
        """Keep a stream up until `stop` is set; raises `CredentialRejected` if refused."""
        renewer = None
        if self._tls is not None:
            renewer = asyncio.create_task(self._renew_loop(registration, stop),
                                          name="certificate-renewal")
        try:
            await self._keep_stream(registration, stop)
        finally:
            if renewer is not None:
                await _cancel(renewer)

    async def _keep_stream(self, registration: Registration, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            address = self.address
            opened_at = loop.time()
            try:
                await self._connect_once(address, registration, stop)
            except _StreamLost as exc:
                failure = f"worker={registration.worker_id}: stream: {exc}"
            else:
                if stop.is_set():
                    return
                # A renewed certificate: a new stream with it at once; jobs keep running
                # and the outbox resends whatever the server has not acknowledged.
                logger.info("worker=%s: reconnecting with the renewed certificate",
                            registration.worker_id)
                continue
            if loop.time() - opened_at >= STABLE_AFTER:
                self._healthy()
            if await _stopped_within(stop, self._fail_over(failure)):
                break

    async def _renew_loop(self, registration: Registration, stop: asyncio.Event) -> None:
        """Renew the client certificate after two thirds of its lifetime, then rotate."""
        assert self._tls is not None
        while True:
            assert self.identity is not None
            delay = self.identity.renew_at - time.monotonic()
            if await _stopped_within(stop, max(delay, 0.0)):
                return
            try:
                async with self._stream_channel(self.address, registration) as channel:
                    self.identity = await self._tls.renew(channel, registration.worker_id,
                                                          REGISTER_TIMEOUT)
            except (grpc.RpcError, TimeoutError, ValueError, OSError) as exc:
                self.identity = self.identity.retry_later()
                logger.warning("worker=%s: certificate renewal failed (%s); retrying in %.0fs",
                               registration.worker_id, describe_failure(exc),
                               self.identity.renew_at - time.monotonic())
                continue
            logger.info("worker=%s: certificate renewed", registration.worker_id)
            self._rotate.set()

    async def _connect_once(
        self, address: str, registration: Registration, stop: asyncio.Event
    ) -> None:
        async with self._stream_channel(address, registration) as channel:
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    await channel.channel_ready()
            except TimeoutError:
                raise _StreamLost(f"cannot connect within {CONNECT_TIMEOUT:g}s") from None
            stub = agent_pb2_grpc.WorkerAgentServiceStub(channel)
            metadata = (
                ("authorization", f"Bearer {registration.credential}"),
                ("x-hodei-worker-id", registration.worker_id),
            )
            call = stub.Connect(metadata=metadata)
            try:
                await self._converse(call, registration, stop)
            except _NETWORK_ERRORS as exc:
                status = describe_failure(exc)
                code = await call.code() if call.done() else None
                if code == grpc.StatusCode.INTERNAL:
                    # grpc-python reports INTERNAL when a write races the server ending the
                    # call, hiding the server's own status: ask again without writing.
                    logger.debug("stream to %s ended INTERNAL (%s); probing", address, status)
                    ending = await _status_of_silent_call(stub, metadata)
                    if ending is not None:
                        code, status = ending.code(), describe_failure(ending)
                if code in _CONNECT_FATAL:
                    raise CredentialRejected(
                        f"server {address} refused worker {registration.worker_id}: {status}"
                    ) from None
                raise _StreamLost(status) from None
            finally:
                call.cancel()

    async def _converse(
        self, call: grpc.aio.StreamStreamCall, registration: Registration, stop: asyncio.Event
    ) -> None:
        self._rotate.clear()  # this stream opens with the newest certificate
        await write_message(call, agent_pb2.AgentMessage(hello=self._hello()))
        self._outbox.rewind()
        logger.info("worker=%s: connected to %s", registration.worker_id, self.address)
        reader = asyncio.create_task(self._read_loop(call), name="session-reader")
        writer = asyncio.create_task(
            self._write_loop(call, registration.heartbeat_interval), name="session-writer"
        )
        stopper = asyncio.create_task(stop.wait(), name="session-stop")
        rotator = asyncio.create_task(self._rotate.wait(), name="session-rotate")
        tasks = (reader, writer, stopper, rotator)
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if stopper.done() or rotator.done():
                await _cancel(writer)
                await _close(call, reader)
                return
            for task in (reader, writer):
                if task.done() and (error := task.exception()) is not None:
                    raise error
            raise _StreamLost("the server ended the stream")
        finally:
            for pending in tasks:
                await _cancel(pending)

    async def _read_loop(self, call: grpc.aio.StreamStreamCall) -> None:
        while True:
            message = await call.read()
            if message is grpc.aio.EOF:
                return
            self._on_message(message)

    async def _write_loop(self, call: grpc.aio.StreamStreamCall, interval: float) -> None:
        loop = asyncio.get_running_loop()
        next_heartbeat = loop.time()
        wake: asyncio.TimerHandle | None = None
        last_write = 0.0
        # One deadline for the whole loop, moved around each write: cheaper than a timeout
        # context per message.
        async with asyncio.timeout(None) as deadline:
            try:
                while True:
                    if loop.time() >= next_heartbeat:
                        beat = agent_pb2.AgentMessage(heartbeat=self._heartbeat())
                        await write_message(call, beat, deadline)
                        next_heartbeat = loop.time() + interval
                        if wake is not None:
                            wake.cancel()
                        wake = loop.call_at(next_heartbeat, self._outbox.changed.set)
                    # Writes closer together than COALESCE_SECONDS (a busy agent) wait for
                    # the rest of that time, so that what comes meanwhile shares the write.
                    pause = last_write + COALESCE_SECONDS - loop.time()
                    if pause > 0:
                        await asyncio.sleep(pause)
                    # Cleared before taking, so nothing queued after the take can be missed.
                    self._outbox.changed.clear()
                    batch = self._outbox.take_unsent(SEND_BATCH)
                    for message in envelopes(batch):
                        await write_message(call, message, deadline)
                    if batch:
                        last_write = loop.time()
                    else:
                        await self._outbox.changed.wait()  # or the heartbeat's wake-up
            finally:
                if wake is not None:
                    wake.cancel()


async def _cancel(task: asyncio.Task[Any]) -> None:
    """Cancel `task` and wait for it; its error, if any, was already acted upon."""
    task.cancel()
    await asyncio.wait({task})
    if not task.cancelled():
        task.exception()  # retrieved, so asyncio does not report it as lost


async def _close(call: grpc.aio.StreamStreamCall, reader: asyncio.Task[None]) -> None:
    """Half-close the stream and give the server a moment to end it cleanly."""
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT):
            await call.done_writing()
            await asyncio.wait({reader})
    except _NETWORK_ERRORS:
        logger.debug("stream did not close cleanly", exc_info=True)


async def _status_of_silent_call(
    stub: agent_pb2_grpc.WorkerAgentServiceStub, metadata: tuple[tuple[str, str], ...]
) -> grpc.aio.AioRpcError | None:
    """How the server ends a Connect that sends nothing, if it does so at once (rejecting
    the credential, say); None if it waits for a Hello as it should."""
    probe = stub.Connect(metadata=metadata)
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            await probe.read()
    except grpc.aio.AioRpcError as exc:
        return exc
    except TimeoutError:
        return None
    finally:
        probe.cancel()
    return None

