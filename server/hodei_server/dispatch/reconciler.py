"""What no single stream sees: silent workers, cron ticks, provisioning, token clean-up.

Cluster-wide work (silent workers, cron ticks, token clean-up) is done by one leader per
database,
chosen with a PostgreSQL advisory lock held on a dedicated connection: when the leader dies
its connection closes and another replica takes over. Provisioning is per replica: each
replica manages the providers of its own configuration, whose agents dial that replica.
"""

from __future__ import annotations

import asyncio
import logging
import time

import psycopg

from hodei_plugins.provider import ProviderError
from hodei_server.dispatch import waiting
from hodei_server.dispatch.provisioning import ProviderRuntime
from hodei_server.dispatch.registry import AgentRegistry
from hodei_server.dispatch.supervise import retry_delay
from hodei_server.dispatch.ticker import CronTicker
from hodei_server.store.jobs import JobStore
from hodei_server.store.sqlfiles import query
from hodei_server.store.workers import WorkerStore

log = logging.getLogger(__name__)

_LEADER_LOCK = 0x48_4F_44_45_49_02
_TOKEN_SWEEP_SECONDS = 300.0


class Reconciler:
    def __init__(
        self,
        url: str,
        jobs: JobStore,
        workers: WorkerStore,
        registry: AgentRegistry,
        providers: list[ProviderRuntime],
        server_address: str,
        interval: float,
        heartbeat_ttl: float,
        token_ttl: float,
        ticker: CronTicker | None = None,
    ) -> None:
        self.url = url
        self.jobs = jobs
        self.workers = workers
        self.registry = registry
        self.providers = providers
        self.server_address = server_address
        self.interval = interval
        self.heartbeat_ttl = heartbeat_ttl
        self.token_ttl = token_ttl
        self.ticker = ticker
        self.is_leader = False
        self.leader_since = 0.0
        self._last_sweep = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        failures = 0
        while not stop.is_set():
            try:
                await self._lead(stop)
                return
            except (psycopg.Error, OSError) as exc:
                self.is_leader = False
                failures += 1
                delay = retry_delay(failures)
                log.warning("reconciler lost the database (%s); retry in %.1fs", exc, delay)
                try:
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                except TimeoutError:
                    pass

    async def _lead(self, stop: asyncio.Event) -> None:
        conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True, connect_timeout=10)
        async with conn:
            while not stop.is_set():
                if not self.is_leader:
                    cur = await conn.execute(query("try_leader_lock"), {"key": _LEADER_LOCK})
                    row = await cur.fetchone()
                    self.is_leader = bool(row and row[0])
                    if self.is_leader:
                        self.leader_since = time.monotonic()
                        log.info("this replica is now the reconciler leader")
                else:
                    await conn.execute(query("ping"))  # still holding the lock's connection
                if self.is_leader:
                    if self.ticker is not None:
                        await self.ticker.tick()
                    await self.reconcile_cluster()
                await self.reconcile_providers()
                if self.is_leader:
                    await self.explain_waiting()
                try:
                    await asyncio.wait_for(stop.wait(), timeout=self.interval)
                except TimeoutError:
                    pass

    async def reconcile_cluster(self) -> None:
        # A new leader (often: a restarted server) first gives every agent one TTL to
        # reconnect, so a restart does not declare the whole fleet lost at once.
        if time.monotonic() - self.leader_since < self.heartbeat_ttl:
            return
        lost = await self.workers.expire_lost(self.heartbeat_ttl)
        for worker_id in lost:
            log.warning("worker %s lost: no heartbeat for %.0fs", worker_id, self.heartbeat_ttl)
        if time.monotonic() - self._last_sweep > _TOKEN_SWEEP_SECONDS:
            self._last_sweep = time.monotonic()
            async with self.jobs.pool.connection() as conn:
                await conn.execute(query("delete_expired_tokens"))

    async def explain_waiting(self) -> None:
        """Say in each pending job's row why it waits (hodei_server.dispatch.waiting)."""
        try:
            await waiting.explain(self.jobs, waiting.provider_infos(self.providers,
                                                                    self.registry),
                                  "reconciler")
        except (psycopg.Error, OSError):
            raise
        except Exception:
            log.exception("could not explain why pending jobs wait")

    async def reconcile_providers(self) -> None:
        for runtime in self.providers:
            try:
                await runtime.reconcile(self.registry, self.jobs, self.workers,
                                        self.server_address, self.token_ttl)
            except (psycopg.Error, OSError):
                raise
            except ProviderError as exc:
                # An infrastructure problem (engine down, host unreachable): one line, and
                # `hodeictl provider list` shows it until a reconcile succeeds.
                if str(exc) != runtime.last_error:
                    log.warning("provider %s: %s", runtime.config.name, exc)
                runtime.last_error = str(exc)
            except Exception as exc:
                log.exception("provider %s failed to reconcile", runtime.config.name)
                runtime.last_error = str(exc) or type(exc).__name__
            else:
                if runtime.last_error:
                    log.info("provider %s is healthy again", runtime.config.name)
                runtime.last_error = ""
