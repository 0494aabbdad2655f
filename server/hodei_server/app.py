"""Wires the server together and runs it: store, security, dispatch and API, then its loops."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc

from hodei_agent import jsonlog
from hodei_plugins.manager import get_host
from hodei_plugins.provider import Provider, ProviderConfig
from hodei_server.api import server as grpc_server
from hodei_server.api.agent.handshake import AgentServicer
from hodei_server.api.health import Health
from hodei_server.api.servicers.jobs import JobServicer
from hodei_server.api.servicers.logs import LogServicer
from hodei_server.api.servicers.secrets import SecretServicer
from hodei_server.api.servicers.templates import ScheduleServicer, TemplateServicer
from hodei_server.api.servicers.tokens import TokenServicer
from hodei_server.api.servicers.watch import EventServicer
from hodei_server.api.servicers.workers import WorkerServicer
from hodei_server.config import ServerConfig
from hodei_server.dispatch.dispatcher import Dispatcher
from hodei_server.dispatch.feeds import EventHub, WorkerHub
from hodei_server.dispatch.flows import FlowRunner
from hodei_server.dispatch.listener import Listener
from hodei_server.dispatch.loghub import LogHub
from hodei_server.dispatch.metrics import DatabaseCollector, TransitionObserver, serve_metrics
from hodei_server.dispatch.placement import build_scheduler
from hodei_server.dispatch.provisioning import ProviderRuntime
from hodei_server.dispatch.reconciler import Reconciler
from hodei_server.dispatch.registry import AgentRegistry
from hodei_server.dispatch.supervise import supervised
from hodei_server.dispatch.ticker import CronTicker
from hodei_server.errors import ConfigError
from hodei_server.security import tls as tls_mod
from hodei_server.security.apitokens import TokenStore
from hodei_server.security.authz import Authorizer
from hodei_server.security.secretkeys import Keyring
from hodei_server.security.secretstore import SecretResolver, SecretStore, build_backends
from hodei_server.store import db
from hodei_server.store.events import EventStore
from hodei_server.store.flows import FlowStore
from hodei_server.store.jobs import JobStore
from hodei_server.store.schedules import ScheduleStore
from hodei_server.store.templates import TemplateStore
from hodei_server.store.workers import WorkerStore

log = logging.getLogger(__name__)

OnReady = Callable[[str], Awaitable[None]]


async def serve(config: ServerConfig, stop: asyncio.Event, on_ready: OnReady | None = None) -> None:
    """Run until `stop` is set (or a supervised loop crashes)."""
    if not config.database_url:
        raise ConfigError("no database: set HODEI_DATABASE_URL or database_url in the config")
    tls = tls_mod.load(config)  # before anything else: a refusal must cost nothing
    server_id = secrets.token_hex(6)
    pool = await db.open_pool(config.database_url, max_size=config.db_pool_size)
    try:
        async with pool.connection() as conn:
            await db.migrate(conn)
        await _assemble(config, tls, pool, server_id).run(stop, on_ready)
    finally:
        await pool.close()


def setup_logging(level: str, log_format: str = "text") -> None:
    """Log to stderr, one line a record (text, or JSON objects: hodei_agent.jsonlog), for a
    process that runs a server."""
    jsonlog.setup(level, log_format)


def _provider(config: ProviderConfig) -> Provider:
    cls = get_host().provider_for_config(config)
    if cls is None:
        raise ConfigError(f"provider {config.name!r}: no registered provider takes a "
                          f"{type(config).__name__}")
    provider: Provider = cls(config)
    return provider


def _assemble(
    config: ServerConfig, tls: tls_mod.Tls | None, pool: db.Pool, server_id: str
) -> _Replica:
    """Every part of one server replica, each handed the parts it works with."""
    jobs = JobStore(pool)
    flows = FlowStore(pool, jobs)
    templates = TemplateStore(pool, flows)
    schedules = ScheduleStore(pool)
    workers = WorkerStore(pool, jobs)
    tokens = TokenStore(pool)
    authorizer = Authorizer(pool, tokens)
    secret_store = SecretStore(pool, Keyring.load(config.secret_key_file))
    secret_resolver = SecretResolver(pool, build_backends(secret_store, config.secret_backends))
    registry = AgentRegistry()
    hub = LogHub()
    events = EventStore(pool)
    worker_feed = WorkerHub(events, config.watch_buffer, config.heartbeat_interval)
    event_feed = EventHub(events, config.watch_buffer, worker_feed.wake, server_id)
    dispatcher = Dispatcher(jobs, registry, server_id, config.resync_interval,
                            build_scheduler(config), secret_resolver)
    runtimes = [ProviderRuntime(_provider(p), tls.ca_cert_path if tls else "")
                for p in config.providers]
    agents = AgentServicer(jobs, workers, registry, dispatcher, hub, server_id,
                           config.heartbeat_interval, config.heartbeat_ttl, tls)
    health = Health(grpc_server.SERVICE_NAMES)
    server = grpc_server.build(authorizer, grpc_server.Services(
        jobs=JobServicer(jobs, registry, dispatcher, authorizer, server_id, secret_resolver,
                         flows, event_feed),
        logs=LogServicer(jobs, hub),
        workers=WorkerServicer(workers, registry, runtimes, server_id, worker_feed),
        tokens=TokenServicer(tokens),
        secrets=SecretServicer(secret_store),
        agents=agents,
        health=health,
        templates=TemplateServicer(templates, schedules, dispatcher, secret_resolver),
        schedules=ScheduleServicer(schedules),
        events=EventServicer(events, event_feed),
    ))
    address = grpc_server.listen(server, config, tls, agents)

    ticker = CronTicker(schedules, flows, jobs, registry, server_id, clock=schedules)
    reconciler = Reconciler(
        config.database_url, jobs, workers, registry, runtimes, address,
        config.reconcile_interval, config.heartbeat_ttl, config.bootstrap_token_ttl, ticker,
    )
    flow_runner = FlowRunner(flows, schedules, registry, server_id, config.reconcile_interval,
                             lambda: reconciler.is_leader)

    def on_reconnect() -> None:
        dispatcher.wake()
        hub.wake_all()
        tokens.forget()  # a revocation may have gone unheard
        flow_runner.wake()
        event_feed.wake()

    listener = Listener(config.database_url, registry, server_id, dispatcher.wake, hub.wake,
                        tokens.forget, on_reconnect, flow_runner.wake, event_feed.wake)
    transport = (f"TLS; agent streams (mutual TLS) on port {agents.agent_port}" if tls
                 else "plaintext")
    banner = (f"hodei server {server_id} listening on {config.listen} (advertised as "
              f"{address}), {transport}")
    collector = (DatabaseCollector(pool, events, asyncio.get_running_loop(),
                                   lambda: reconciler.is_leader)
                 if config.metrics_listen else None)
    return _Replica(pool, server, health, registry, runtimes, dispatcher, listener, reconciler,
                    flow_runner, address, banner, event_feed, worker_feed,
                    TransitionObserver(event_feed, lambda: reconciler.is_leader),
                    config.metrics_listen, collector)


@dataclass
class _Replica:
    """One assembled server replica, ready to run."""

    pool: db.Pool
    server: grpc.aio.Server
    health: Health
    registry: AgentRegistry
    runtimes: list[ProviderRuntime]
    dispatcher: Dispatcher
    listener: Listener
    reconciler: Reconciler
    flow_runner: FlowRunner
    address: str
    banner: str
    event_feed: EventHub
    worker_feed: WorkerHub
    observer: TransitionObserver
    metrics_listen: str
    collector: DatabaseCollector | None

    async def run(self, stop: asyncio.Event, on_ready: OnReady | None) -> None:
        """Serve, with the supervised loops running, until `stop` is set or a loop crashes;
        then stop in order."""
        # First: a metrics address that is taken must cost nothing else.
        stop_metrics = (serve_metrics(self.metrics_listen, self.collector)
                        if self.collector is not None else None)
        try:
            await self._run(stop, on_ready)
        finally:
            if stop_metrics is not None:
                stop_metrics()

    async def _run(self, stop: asyncio.Event, on_ready: OnReady | None) -> None:
        crashed = asyncio.Event()
        await self.server.start()
        async with contextlib.AsyncExitStack() as providers:
            try:
                for runtime in self.runtimes:
                    await providers.enter_async_context(runtime.provider)
            except BaseException:
                # E.g. a provider's engine is unreachable: stop serving before reporting it.
                await self.server.stop(grace=0)
                raise
            tasks = [
                supervised(self.health.watch_database(self.pool, stop), "database-watch",
                           crashed),
                supervised(self.listener.run(stop), "listener", crashed),
                supervised(self.dispatcher.run(stop), "dispatcher", crashed),
                supervised(self.reconciler.run(stop), "reconciler", crashed),
                supervised(self.flow_runner.run(stop), "flows", crashed),
                supervised(self.event_feed.run(stop), "event-feed", crashed),
                supervised(self.worker_feed.run(stop), "worker-feed", crashed),
            ]
            if self.collector is not None:
                tasks.append(supervised(self.observer.run(stop), "metrics", crashed))
            try:
                await asyncio.wait_for(self.listener.ready.wait(), timeout=15)
            except TimeoutError:
                log.warning("notification listener not ready yet; relying on the resync timer")
            await self.health.set(True)
            log.info("%s", self.banner)
            if on_ready is not None:
                await on_ready(self.address)
            stopper = asyncio.ensure_future(stop.wait())
            crash = asyncio.ensure_future(crashed.wait())
            await asyncio.wait({stopper, crash}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            crash.cancel()
            stop.set()
            log.info("shutting down")
            await self.health.shutting_down()
            # Providers first: their agents drain while their streams can still deliver
            # the last output and results.
            await providers.aclose()
            for session in self.registry.all():
                session.close()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.server.stop(grace=2.0)
        if crashed.is_set():
            raise RuntimeError("a server loop crashed; see the log above")
