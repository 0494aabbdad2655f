"""The registered hosts, kept in PostgreSQL (table `ssh_hosts`) with their pinned host keys."""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from hodei_ssh.errors import RegistryError

HOST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
KEY_MODES = ("known_hosts", "pinned", "tofu")
# The provider name recorded for the workers of hosts bootstrapped by `hodeictl host
# bootstrap` (those a server's `ssh` provider bootstraps carry that provider's name).
MANUAL_PROVIDER = "ssh-manual"


def query(name: str) -> str:
    """A named query of the server's (hodei_server/store/sql/ssh_hosts.sql)."""
    from hodei_server.store import sqlfiles

    return sqlfiles.query(name)


@dataclass(frozen=True)
class Host:
    name: str
    address: str
    username: str
    port: int = 22
    key_path: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    jump: str = ""
    sudo: bool = False
    host_key_mode: str = "known_hosts"
    host_key: str = ""
    fingerprint: str = ""
    state: str = "registered"
    service: str = ""
    provider: str = ""
    agent_version: str = ""
    worker_name: str = ""
    last_error: str = ""
    last_contact: dt.datetime | None = None
    worker_state: str = ""

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Host:
        return cls(
            name=row["name"], address=row["address"], username=row["username"],
            port=int(row["port"]), key_path=row["key_path"], labels=dict(row["labels"]),
            jump=row["jump"], sudo=bool(row["sudo"]), host_key_mode=row["host_key_mode"],
            host_key=row["host_key"], fingerprint=row["fingerprint"], state=row["state"],
            service=row["service"], provider=row["provider"], agent_version=row["agent_version"],
            worker_name=row["worker_name"], last_error=row["last_error"],
            last_contact=row["last_contact"], worker_state=row.get("worker_state") or "",
        )


def validate_name(name: str, what: str = "host name") -> str:
    if not HOST_NAME.fullmatch(name):
        raise RegistryError(f"{what} {name!r} is not valid: 1-63 letters, digits, '.', '_' or "
                            "'-', starting with a letter or digit")
    return name


class HostRegistry:
    """The `ssh_hosts` table, through the server's named queries."""

    def __init__(self, pool: Any, actor: str = "operator") -> None:
        self.pool = pool
        self.actor = actor

    async def _one(self, sql: str, params: dict[str, Any]) -> dict[str, Any] | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(sql, params)
            row = await cur.fetchone()
        return dict(row) if row is not None else None

    async def add(self, host: Host) -> Host:
        from psycopg.types.json import Jsonb

        validate_name(host.name)
        if host.jump:
            validate_name(host.jump, "--jump host")
            if host.jump == host.name:
                raise RegistryError(f"host {host.name} cannot be its own jump host")
            await self.get(host.jump)
        if host.host_key_mode not in KEY_MODES:
            raise RegistryError(f"host-key mode must be one of {', '.join(KEY_MODES)}")
        row = await self._one(query("ssh_host_insert"), {
            "name": host.name, "address": host.address, "port": host.port,
            "username": host.username, "key_path": host.key_path, "labels": Jsonb(host.labels),
            "jump": host.jump, "sudo": host.sudo, "host_key_mode": host.host_key_mode,
            "fingerprint": host.fingerprint, "actor": self.actor,
        })
        if row is None:
            raise RegistryError(f"host {host.name} is already registered; `hodeictl host "
                                "remove` it first to change it")
        return Host.from_row(row)

    async def get(self, name: str) -> Host:
        row = await self._one(query("ssh_host_get"), {"name": name})
        if row is None:
            raise RegistryError(f"no host named {name!r}; see `hodeictl host list`")
        return Host.from_row(row)

    async def list(self) -> list[Host]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(query("ssh_host_list"))
            return [Host.from_row(dict(row)) for row in await cur.fetchall()]

    async def pin(self, name: str, host_key: str, fingerprint: str) -> Host:
        row = await self._one(query("ssh_host_pin"), {"name": name, "host_key": host_key,
                                               "fingerprint": fingerprint, "actor": self.actor})
        if row is None:
            raise RegistryError(f"no host named {name!r}")
        return Host.from_row(row)

    async def set_state(self, name: str, state: str, error: str = "",
                        contacted: bool = False) -> None:
        await self._one(query("ssh_host_set_state"), {"name": name, "state": state,
                                               "last_error": error, "contacted": contacted})

    async def bootstrapped(self, name: str, service: str, agent_version: str,
                           worker_name: str, provider: str = "") -> None:
        await self._one(query("ssh_host_bootstrapped"), {
            "name": name, "service": service, "agent_version": agent_version,
            "worker_name": worker_name, "provider": provider, "actor": self.actor})

    async def delete(self, host: Host) -> int:
        """Remove the host and revoke its worker; the number of workers revoked."""
        async with self.pool.connection() as conn, conn.transaction():
            revoked = 0
            if host.worker_name:
                cur = await conn.execute(query("ssh_host_revoke_worker"), {
                    "worker_name": host.worker_name,
                    "provider": host.provider or MANUAL_PROVIDER, "actor": self.actor})
                row = await cur.fetchone()
                revoked = int(row["revoked"]) if row else 0
            await conn.execute(query("ssh_host_delete"),
                               {"name": host.name, "actor": self.actor})
        return revoked

    async def create_token(self, labels: dict[str, str], ttl: float = 900.0,
                           provider: str = MANUAL_PROVIDER) -> str:
        """A one-time bootstrap token for a host's agent."""
        from hodei_server.store.jobs import JobStore
        from hodei_server.store.workers import WorkerStore

        return await WorkerStore(self.pool, JobStore(self.pool)).create_bootstrap_token(
            provider, labels, ttl)


@contextlib.asynccontextmanager
async def open_registry(database_url: str, actor: str = "operator",
                        ) -> AsyncIterator[HostRegistry]:
    """A registry on a database migrated to this version's schema."""
    from hodei_server.cli.database import migrated_pool

    async with migrated_pool(database_url) as pool:
        yield HostRegistry(pool, actor)
