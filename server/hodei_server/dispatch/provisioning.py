"""Keeps each provider's worker count between its bounds and in line with demand."""

from __future__ import annotations

import logging
import math
import secrets
import time
from dataclasses import dataclass, field

from hodei_api.v1 import workers_pb2
from hodei_plugins.provider import AdoptsWorkers, Provider
from hodei_server.dispatch.registry import AgentRegistry
from hodei_server.dispatch.session import EPHEMERAL_LABEL, AgentSession
from hodei_server.store.jobs import JobStore
from hodei_server.store.workers import WorkerStore

log = logging.getLogger(__name__)


@dataclass
class _Started:
    infra_id: str
    started_at: float = field(default_factory=time.monotonic)
    draining: bool = False
    # Set once its agent connected: from then on, an agent without a stream is one coming
    # back (its own restart, PostgreSQL's, the server's), never one that failed to start.
    connected: bool = False


class ProviderRuntime:
    """One configured provider and the workers it started."""

    def __init__(self, provider: Provider, server_ca: str = "") -> None:
        self.provider = provider
        # The CA certificate file agents verify the server with; "" when it speaks plaintext.
        self.server_ca = server_ca
        self.config = provider.config
        self.started: dict[str, _Started] = {}
        self._adopted = False
        # The last reconcile error, "" once a reconcile succeeds.
        self.last_error = ""

    def sessions(self, registry: AgentRegistry) -> list[AgentSession]:
        return [s for s in registry.all() if s.provider == self.config.name
                and s.name in self.started]

    async def reconcile(
        self, registry: AgentRegistry, jobs: JobStore, workers: WorkerStore,
        server_address: str, token_ttl: float,
    ) -> None:
        if not self._adopted:
            if isinstance(self.provider, AdoptsWorkers):
                taken = await self.provider.adopt_workers(server_address=server_address)
                for name, infra_id in taken.items():
                    self.started[name] = _Started(infra_id, connected=True)
            self._adopted = True
        exited = set(self.provider.forget_exited())
        for name, item in list(self.started.items()):
            if item.infra_id in exited:
                del self.started[name]
        connected = {s.name: s for s in self.sessions(registry)}
        now = time.monotonic()
        for name, item in list(self.started.items()):
            if name in connected:
                item.connected = True
            elif not item.connected and now - item.started_at > self.config.connect_timeout:
                log.warning("agent %s never connected; stopping it", name)
                del self.started[name]
                await self.provider.destroy_worker(item.infra_id)

        # Agents of this provider that another server process started (this one's
        # predecessor, killed without stopping them) and that reconnected here: they count
        # against max_workers and are drained first when there are too many.
        adopted = [s for s in registry.all() if s.provider == self.config.name
                   and s.name not in self.started and not s.draining]
        demand = self._demand(await jobs.pending_demand())
        free = sum(s.free_slots for s in [*connected.values(), *adopted] if s.accepting)
        starting = sum(
            self.slots_per_worker for n, item in self.started.items() if n not in connected
        )
        active = len([n for n, item in self.started.items() if not item.draining]) + len(adopted)
        for session in adopted[: max(0, active - self.config.max_workers)]:
            log.info("agent %s is one too many for provider %s; draining it", session.name,
                     self.config.name)
            self._drain(session)
            active -= 1
        wanted = math.ceil(max(0, demand - free - starting) / self.slots_per_worker)
        wanted = max(wanted, self.config.min_workers - active)
        wanted = min(wanted, self.config.max_workers - active)
        for _ in range(max(0, wanted)):
            await self._start_one(workers, server_address, token_ttl)
        if demand == 0:
            live = [s for s in [*adopted, *connected.values()] if not s.draining]
            self._retire_idle(live, active)

    def _demand(self, pending: list[dict[str, object]]) -> int:
        """Pending jobs one of this provider's workers could take: labels and capacity."""
        labels = self.config.labels | {"provider": self.config.name}
        # Providers that size their workers (docker: cpus, memory_mb per container) never
        # start a worker for a job that would not fit in it.
        cpus = float(getattr(self.config, "cpus", 0) or 0)
        memory_mb = int(getattr(self.config, "memory_mb", 0) or 0)
        count = 0
        for job in pending:
            selector = job["selector"]
            assert isinstance(selector, dict)
            if not all(labels.get(k) == v for k, v in selector.items()):
                continue
            if cpus and float(job["cpus"]) > cpus:  # type: ignore[arg-type]
                continue
            if memory_mb and int(job["memory_mb"]) > memory_mb:  # type: ignore[call-overload]
                continue
            count += 1
        return count

    @property
    def slots_per_worker(self) -> int:
        return 1 if self.config.ephemeral else self.config.slots

    async def _start_one(self, workers: WorkerStore, server_address: str, ttl: float) -> None:
        name = f"{self.config.name}-{secrets.token_hex(3)}"
        labels = self.config.labels | {"provider": self.config.name}
        if self.config.ephemeral:
            labels[EPHEMERAL_LABEL] = "true"
        token = await workers.create_bootstrap_token(self.config.name, labels, ttl)
        # Passed only with TLS, so providers written before it keep working in plaintext.
        tls = {"ca_cert": self.server_ca} if self.server_ca else {}
        infra_id = await self.provider.create_worker(
            name=name, bootstrap_token=token, server_address=server_address,
            labels=labels, slots=self.slots_per_worker, **tls,
        )
        self.started[name] = _Started(infra_id)

    def status(self, registry: AgentRegistry) -> workers_pb2.ProviderStatus:
        connected = [s for s in registry.all() if s.provider == self.config.name]
        names = {s.name for s in connected}
        return workers_pb2.ProviderStatus(
            name=self.config.name,
            type=self.provider.type_name,
            min_workers=self.config.min_workers,
            max_workers=self.config.max_workers,
            slots_per_worker=self.slots_per_worker,
            ephemeral=self.config.ephemeral,
            strategy=self.config.strategy,
            workers=len(connected),
            starting=len([n for n in self.started if n not in names]),
            slots_total=sum(s.slots for s in connected),
            slots_used=sum(len(s.running) for s in connected),
            healthy=not self.last_error,
            error=self.last_error,
        )

    def _retire_idle(self, sessions: list[AgentSession], active: int) -> None:
        now = time.monotonic()
        for session in sessions:
            if active <= self.config.min_workers:
                return
            if not session.running and now - session.idle_since >= self.config.idle_timeout:
                log.info("agent %s idle for %.0fs; draining it", session.name,
                         now - session.idle_since)
                self._drain(session)
                active -= 1

    def _drain(self, session: AgentSession) -> None:
        item = self.started.get(session.name)
        if item is not None:
            item.draining = True
        session.drain()
