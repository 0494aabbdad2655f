"""Assembles the server: pool, stores, servicers, dispatcher, listener, reconciler."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
from collections.abc import Awaitable, Callable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from hodei_api.v1 import (
    agent_pb2,
    agent_pb2_grpc,
    auth_pb2,
    auth_pb2_grpc,
    jobs_pb2,
    jobs_pb2_grpc,
    logs_pb2,
    logs_pb2_grpc,
    secrets_pb2,
    secrets_pb2_grpc,
    workers_pb2,
    workers_pb2_grpc,
)
from hodei_plugins.manager import get_host
from hodei_plugins.provider import Provider, ProviderConfig
from hodei_server.api.agent.handshake import AgentServicer
from hodei_server.api.interceptors import AuthInterceptor, MalformedRequests
from hodei_server.api.servicers.jobs import JobServicer
from hodei_server.api.servicers.logs import LogServicer
from hodei_server.api.servicers.secrets import SecretServicer
from hodei_server.api.servicers.tokens import TokenServicer
from hodei_server.api.servicers.workers import WorkerServicer
from hodei_server.config import ServerConfig
from hodei_server.dispatch.dispatcher import Dispatcher
from hodei_server.dispatch.listener import Listener
from hodei_server.dispatch.loghub import LogHub
from hodei_server.dispatch.placement import build_scheduler
from hodei_server.dispatch.provisioning import ProviderRuntime
from hodei_server.dispatch.reconciler import Reconciler
from hodei_server.dispatch.registry import AgentRegistry
from hodei_server.dispatch.supervise import supervised
from hodei_server.errors import ConfigError
from hodei_server.security import tls as tls_mod
from hodei_server.security.apitokens import TokenStore
from hodei_server.security.authz import Authorizer
from hodei_server.security.secretkeys import Keyring
from hodei_server.security.secretstore import SecretResolver, SecretStore, build_backends
from hodei_server.store import db
from hodei_server.store.jobs import JobStore
from hodei_server.store.sqlfiles import query
from hodei_server.store.workers import WorkerStore

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 8 * 1024 * 1024
DB_CHECK_INTERVAL = 1.0
DB_CHECK_TIMEOUT = 3.0
_SERVICE_NAMES = [
    jobs_pb2.DESCRIPTOR.services_by_name["JobService"].full_name,
    logs_pb2.DESCRIPTOR.services_by_name["LogService"].full_name,
    workers_pb2.DESCRIPTOR.services_by_name["WorkerService"].full_name,
    auth_pb2.DESCRIPTOR.services_by_name["TokenService"].full_name,
    agent_pb2.DESCRIPTOR.services_by_name["WorkerAgentService"].full_name,
    secrets_pb2.DESCRIPTOR.services_by_name["SecretService"].full_name,
]


def _check_free(listen: str, option: str = "--listen") -> None:
    """Say clearly when the address is taken, before gRPC logs its own noise about it."""
    host, sep, port_text = listen.rpartition(":")
    if not sep or not port_text.isdigit() or int(port_text) > 65535:
        raise ConfigError(f"{option} {listen!r} must look like HOST:PORT (e.g. 127.0.0.1:50051)")
    if int(port_text) == 0:
        return
    host = host.strip("[]") or "0.0.0.0"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, int(port_text)))
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {listen}: {exc.strerror or exc}; choose another with {option}"
            ) from exc


def _bind(server: grpc.aio.Server, listen: str,
          credentials: grpc.ServerCredentials | None = None, option: str = "--listen") -> int:
    _check_free(listen, option)
    try:
        if credentials is None:
            port = server.add_insecure_port(listen)
        else:
            port = server.add_secure_port(listen, credentials)
    except RuntimeError as exc:
        raise ConfigError(f"cannot listen on {listen}; choose another with {option}") from exc
    return port


def _advertised(listen: str, port: int) -> str:
    host = listen.rsplit(":", 1)[0]
    if host in ("", "0.0.0.0", "[::]", "::"):
        host = "127.0.0.1"
    return f"{host}:{port}"


def _provider(config: ProviderConfig) -> Provider:
    cls = get_host().provider_for_config(config)
    if cls is None:
        raise ConfigError(f"provider {config.name!r}: no registered provider takes a "
                          f"{type(config).__name__}")
    provider: Provider = cls(config)
    return provider


async def _set_health(health: HealthServicer, serving: bool) -> None:
    status = (health_pb2.HealthCheckResponse.SERVING if serving
              else health_pb2.HealthCheckResponse.NOT_SERVING)
    for name in ["", *_SERVICE_NAMES]:
        await health.set(name, status)


async def watch_database(pool: db.Pool, health: HealthServicer, stop: asyncio.Event) -> None:
    """Report NOT_SERVING while PostgreSQL can't be reached, SERVING once it is back."""
    serving = True
    while not stop.is_set():
        try:
            async with asyncio.timeout(DB_CHECK_TIMEOUT):
                async with pool.connection() as conn:
                    await conn.execute(query("ping"))
            healthy = True
        except Exception as exc:  # any failure to reach the database counts
            healthy = False
            if serving:
                log.warning("database unreachable (%s); health is NOT_SERVING", db.first_line(exc))
        if healthy != serving:
            serving = healthy
            await _set_health(health, serving)
            if serving:
                log.info("database reachable again; health is SERVING")
        try:
            await asyncio.wait_for(stop.wait(), timeout=DB_CHECK_INTERVAL)
        except TimeoutError:
            pass


async def serve(
    config: ServerConfig,
    stop: asyncio.Event,
    on_ready: Callable[[str], Awaitable[None]] | None = None,
) -> None:
    """Run until `stop` is set (or a supervised loop crashes)."""
    if not config.database_url:
        raise ConfigError("no database: set HODEI_DATABASE_URL or database_url in the config")
    tls = tls_mod.load(config)  # before anything else: a refusal must cost nothing
    server_id = secrets.token_hex(6)
    pool = await db.open_pool(config.database_url, max_size=config.db_pool_size)
    try:
        async with pool.connection() as conn:
            await db.migrate(conn)
        await _run(config, tls, stop, pool, server_id, on_ready)
    finally:
        await pool.close()


async def _run(
    config: ServerConfig,
    tls: tls_mod.Tls | None,
    stop: asyncio.Event,
    pool: db.Pool,
    server_id: str,
    on_ready: Callable[[str], Awaitable[None]] | None,
) -> None:
    jobs = JobStore(pool)
    workers = WorkerStore(pool, jobs)
    registry = AgentRegistry()
    hub = LogHub()
    secret_store = SecretStore(pool, Keyring.load(config.secret_key_file))
    secret_resolver = SecretResolver(pool, build_backends(secret_store, config.secret_backends))
    dispatcher = Dispatcher(jobs, registry, server_id, config.resync_interval,
                            build_scheduler(config), secret_resolver)
    health = HealthServicer()
    tokens = TokenStore(pool)
    authorizer = Authorizer(pool, tokens)

    server = grpc.aio.server(
        interceptors=[MalformedRequests(), AuthInterceptor(authorizer)],
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.keepalive_time_ms", 20_000),
            ("grpc.keepalive_timeout_ms", 10_000),
            ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
            ("grpc.keepalive_permit_without_calls", 1),
        ]
    )
    jobs_pb2_grpc.add_JobServiceServicer_to_server(
        JobServicer(jobs, registry, dispatcher, authorizer, server_id, secret_resolver), server)
    secrets_pb2_grpc.add_SecretServiceServicer_to_server(SecretServicer(secret_store), server)
    logs_pb2_grpc.add_LogServiceServicer_to_server(LogServicer(jobs, hub), server)
    server_ca = tls.ca_cert_path if tls else ""
    runtimes = [ProviderRuntime(_provider(p), server_ca) for p in config.providers]
    workers_pb2_grpc.add_WorkerServiceServicer_to_server(
        WorkerServicer(workers, registry, runtimes, server_id), server)
    auth_pb2_grpc.add_TokenServiceServicer_to_server(TokenServicer(tokens), server)
    agents = AgentServicer(jobs, workers, registry, dispatcher, hub, server_id,
                           config.heartbeat_interval, config.heartbeat_ttl, tls)
    agent_pb2_grpc.add_WorkerAgentServiceServicer_to_server(agents, server)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        [*_SERVICE_NAMES, reflection.SERVICE_NAME, "grpc.health.v1.Health"], server
    )
    if tls is None:
        port = _bind(server, config.listen)
    else:
        port = _bind(server, config.listen, tls.api_credentials())
        agents.agent_port = _bind(server, tls_mod.agent_listen(config), tls.agent_credentials(),
                                  "agent_listen")
    address = config.advertise_address or _advertised(config.listen, port)
    if tls is not None:
        tls_mod.check_advertised(tls, address)

    def on_reconnect() -> None:
        dispatcher.wake()
        hub.wake_all()
        tokens.forget()  # a revocation may have gone unheard

    listener = Listener(config.database_url, registry, server_id, dispatcher.wake, hub.wake,
                        tokens.forget, on_reconnect)
    reconciler = Reconciler(
        config.database_url, jobs, workers, registry, runtimes, address,
        config.reconcile_interval, config.heartbeat_ttl, config.bootstrap_token_ttl,
    )

    crashed = asyncio.Event()
    await server.start()
    async with contextlib.AsyncExitStack() as stack:
        try:
            for runtime in runtimes:
                await stack.enter_async_context(runtime.provider)
        except BaseException:
            # E.g. a provider's engine is unreachable: stop serving before reporting it.
            await server.stop(grace=0)
            raise
        tasks = [
            supervised(watch_database(pool, health, stop), "database-watch", crashed),
            supervised(listener.run(stop), "listener", crashed),
            supervised(dispatcher.run(stop), "dispatcher", crashed),
            supervised(reconciler.run(stop), "reconciler", crashed),
        ]
        try:
            await asyncio.wait_for(listener.ready.wait(), timeout=15)
        except TimeoutError:
            log.warning("notification listener not ready yet; relying on the resync timer")
        await _set_health(health, True)
        log.info("hodei server %s listening on %s (advertised as %s)%s", server_id,
                 config.listen, address,
                 f", TLS; agent streams (mutual TLS) on port {agents.agent_port}" if tls else
                 ", plaintext")
        if on_ready is not None:
            await on_ready(address)
        stopper = asyncio.ensure_future(stop.wait())
        crash = asyncio.ensure_future(crashed.wait())
        await asyncio.wait({stopper, crash}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        crash.cancel()
        stop.set()
        log.info("shutting down")
        await health.enter_graceful_shutdown()
        # Providers first: their agents drain while their streams can still deliver
        # the last output and results.
        await stack.aclose()
        for session in registry.all():
            session.close()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.stop(grace=2.0)
    if crashed.is_set():
        raise RuntimeError("a server loop crashed; see the log above")
