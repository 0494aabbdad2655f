"""The `ssh` provider: workers drawn from the registered hosts (`hodeictl host add`).

Each worker is one host: `create_worker` bootstraps a free host of the pool with the
server's one-time token (the same steps as `hodeictl host bootstrap`), `destroy_worker`
drains and removes the agent. With `connect = "tunnel"` the agent dials the server through
an SSH remote port forward the provider holds open (for hosts that cannot reach the server).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

from hodei_plugins.provider import ProviderConfig, ProviderError
from hodei_ssh import bootstrap, remote
from hodei_ssh.registry import Host, HostRegistry

log = logging.getLogger(__name__)

FREE_STATES = ("registered", "failed", "ready")
# How often the provider looks for workers whose agents exited (drained: idle, ephemeral).
WATCH_INTERVAL = 2.0


@dataclass(frozen=True)
class SshProviderConfig(ProviderConfig):
    name: str = "ssh"
    # The registered hosts this provider may use; empty: every registered host.
    hosts: list[str] = field(default_factory=list)
    # The registry's database; empty: $HODEI_DATABASE_URL (the server's).
    database_url: str = ""
    # "direct": the agent dials the server's address; "tunnel": it dials the far end of an
    # SSH remote port forward that the provider holds.
    connect: str = "direct"
    # Bootstraps at once.
    parallel: int = 8
    # "auto", "systemd-system", "systemd-user" or "process".
    service: str = "auto"

    def __post_init__(self) -> None:
        if self.connect not in ("direct", "tunnel"):
            raise ValueError("connect must be \"direct\" or \"tunnel\"")
        if self.service not in ("auto", "systemd-system", "systemd-user", "process"):
            raise ValueError("service must be auto, systemd-system, systemd-user or process")
        if self.parallel < 1:
            raise ValueError("parallel must be at least 1")


def _split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


class SshProvider:
    """Infra id: the host's registered name."""

    type_name: ClassVar[str] = "ssh"
    config_class: ClassVar[type[ProviderConfig]] = SshProviderConfig

    def __init__(self, config: ProviderConfig) -> None:
        assert isinstance(config, SshProviderConfig)
        self.config = config
        self._pool: Any = None
        self._registry: HostRegistry | None = None
        self._in_use: set[str] = set()
        self._tunnels: dict[str, contextlib.AsyncExitStack] = {}
        self._bound = asyncio.Semaphore(config.parallel)
        self._claim = asyncio.Lock()
        # Host -> worker name, for the workers this provider bootstrapped or took over.
        self._workers: dict[str, str] = {}
        self._exited: list[str] = []
        self._watch: asyncio.Task[None] | None = None

    async def __aenter__(self) -> SshProvider:
        from hodei_server.store import db

        url = self.config.database_url or os.environ.get("HODEI_DATABASE_URL", "")
        if not url:
            raise ProviderError(f"ssh provider {self.config.name}: no database_url (and no "
                                "HODEI_DATABASE_URL) for the host registry")
        self._pool = await db.open_pool(url, min_size=1, max_size=4)
        self._registry = HostRegistry(self._pool, actor=f"provider:{self.config.name}")
        self._watch = asyncio.get_running_loop().create_task(
            self._watch_exits(), name=f"ssh-provider-{self.config.name}-watch")
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        # The agents stay: they run on their hosts and dial the server again when it is back.
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        for stack in list(self._tunnels.values()):
            await stack.aclose()
        self._tunnels.clear()
        if self._pool is not None:
            await self._pool.close()

    @property
    def registry(self) -> HostRegistry:
        if self._registry is None:
            raise ProviderError("the ssh provider is not open")
        return self._registry

    async def _pick(self) -> Host:
        async with self._claim:
            for host in await self.registry.list():
                if self.config.hosts and host.name not in self.config.hosts:
                    continue
                if host.name in self._in_use or host.state not in FREE_STATES:
                    continue
                if host.state == "ready" and host.worker_state in ("READY", "BUSY",
                                                                   "CONNECTED"):
                    continue  # bootstrapped by hand and serving: not this provider's
                self._in_use.add(host.name)
                return host
        raise ProviderError(f"ssh provider {self.config.name}: no free registered host")

    async def create_worker(
        self, *, name: str, bootstrap_token: str, server_address: str,
        labels: dict[str, str], slots: int, ca_cert: str = "",
    ) -> str:
        host = await self._pick()
        try:
            async with self._bound:
                await self._bootstrap(host, name, bootstrap_token, server_address, labels,
                                      slots, ca_cert)
        except BaseException as exc:
            self._in_use.discard(host.name)
            await self._close_tunnel(host.name)
            if isinstance(exc, ProviderError):
                with contextlib.suppress(Exception):
                    await self.registry.set_state(host.name, "failed", str(exc))
            raise
        return host.name

    async def _bootstrap(self, host: Host, name: str, token: str, server_address: str,
                         labels: dict[str, str], slots: int, ca_cert: str) -> None:
        ca_data = await asyncio.to_thread(Path(ca_cert).read_bytes) if ca_cert else b""
        await self.registry.set_state(host.name, "bootstrapping")
        tunnel: contextlib.AsyncExitStack | None = None
        dial = server_address
        if self.config.connect == "tunnel":
            tunnel = contextlib.AsyncExitStack()
            conn = await tunnel.enter_async_context(
                remote.connect(host, self.registry.get))
            server_host, server_port = _split_address(server_address)
            listener = await conn.forward_remote_port("127.0.0.1", 0, server_host,
                                                      server_port)
            dial = f"127.0.0.1:{listener.get_port()}"
            self._tunnels[host.name] = tunnel
        settings = bootstrap.AgentSettings(
            server=dial, worker_name=name, labels={**host.labels, **labels}, slots=slots,
            insecure=not ca_cert, ca_cert=ca_cert, service=self.config.service)

        async def the_token() -> str:
            return token

        async with remote.connect(host, self.registry.get) as conn:
            marker, service, _ = await bootstrap.bootstrap(
                conn, host, settings, token=the_token, ca_cert_data=ca_data,
                progress=lambda h, step: log.info("ssh provider %s: host %s: %s",
                                                  self.config.name, h, step))
        await self.registry.bootstrapped(host.name, service, marker, name,
                                         provider=self.config.name)
        self._workers[host.name] = name

    async def _close_tunnel(self, name: str) -> None:
        stack = self._tunnels.pop(name, None)
        if stack is not None:
            await stack.aclose()

    async def adopt_workers(self, *, server_address: str) -> dict[str, str]:
        """The hosts this provider bootstrapped before the server restarted: their agents
        run on (restarted there if need be) and dial this server again; they stay its own.
        A tunnelled one is not taken over: its forward died with the previous process, so
        its worker is lost and the host bootstrapped again when needed."""
        if self.config.connect == "tunnel":
            return {}
        taken = {}
        for host in await self.registry.list():
            if host.provider == self.config.name and host.state == "ready" \
                    and host.worker_name:
                self._in_use.add(host.name)
                self._workers[host.name] = host.worker_name
                taken[host.worker_name] = host.name
        return taken

    async def destroy_worker(self, infra_id: str) -> None:
        if infra_id not in self._in_use:
            return
        try:
            host = await self.registry.get(infra_id)
            async with remote.connect(host, self.registry.get) as conn:
                await bootstrap.remove(conn, host)
            await self.registry.set_state(infra_id, "registered")
        finally:
            self._in_use.discard(infra_id)
            self._workers.pop(infra_id, None)
            await self._close_tunnel(infra_id)

    async def _watch_exits(self) -> None:
        """Hosts whose agent exited for good (drained: its worker is TERMINATED) are cleaned
        and reported by `forget_exited`. A killed agent is restarted on its host (systemd or
        its supervisor) and is not gone; one gone for good shows as a LOST worker."""
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            try:
                hosts = {h.name: h for h in await self.registry.list()}
            except Exception as exc:
                log.warning("ssh provider %s: cannot read the host registry: %s",
                            self.config.name, exc)
                continue
            for name, worker in list(self._workers.items()):
                host = hosts.get(name)
                if host is None or host.worker_name != worker \
                        or host.worker_state != "TERMINATED":
                    continue
                log.info("ssh provider %s: worker %s on host %s exited; removing the agent",
                         self.config.name, worker, name)
                try:
                    await self.destroy_worker(name)
                except Exception as exc:
                    log.warning("ssh provider %s: host %s: %s", self.config.name, name, exc)
                self._exited.append(name)

    def forget_exited(self) -> list[str]:
        gone, self._exited = self._exited, []
        return gone
