"""Secrets on the server: the encrypted built-in store, and resolving what a job names.

A job's spec holds secret *names* only. Their values are resolved when an attempt is
dispatched (`SecretResolver.resolve`), go out in that attempt's RunJob to its agent alone,
and are never written to the jobs table, the events or a log line. Each resolution leaves
one audit row (names, never values).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from hodei_api.v1 import agent_pb2, jobs_pb2
from hodei_plugins.manager import get_host
from hodei_plugins.secrets import (
    MIN_SECRET_BYTES,
    SecretBackend,
    SecretError,
    SecretNotFound,
    check_name,
    secret_exists,
)
from hodei_server.errors import ConfigError, HodeiError, InvalidSpec
from hodei_server.security import audit
from hodei_server.security.secretkeys import Keyring, Sealed
from hodei_server.store.db import Pool
from hodei_server.store.sqlfiles import query
from hodei_server.validation import BUILTIN_SECRET_BACKEND, split_secret_ref

log = logging.getLogger(__name__)

BUILTIN = BUILTIN_SECRET_BACKEND
# A value set through the API; bigger material (a CA bundle) belongs in a file backend.
MAX_STORED_BYTES = 64 * 1024
# Every value of one attempt together, so RunJob stays well under the message limit.
MAX_ATTEMPT_BYTES = 4 * 1024 * 1024

Row = dict[str, Any]


class SecretUnavailable(HodeiError):
    """A secret of an attempt could not be resolved; the message names it, never a value."""


def check_value(name: str, value: bytes) -> None:
    if len(value) < MIN_SECRET_BYTES:
        raise InvalidSpec(
            f"secret {name!r} is shorter than {MIN_SECRET_BYTES} bytes: a value that short "
            "could not be redacted from job output"
        )
    if len(value) > MAX_STORED_BYTES:
        raise InvalidSpec(f"secret {name!r} is larger than {MAX_STORED_BYTES} bytes")


class SecretStore:
    """The built-in `hodei` backend's storage: AES-256-GCM ciphertexts in PostgreSQL."""

    def __init__(self, pool: Pool, keyring: Keyring) -> None:
        self.pool = pool
        self.keyring = keyring

    async def set(self, name: str, value: bytes, actor: str) -> tuple[Row, bool]:
        try:
            check_name(name)
        except SecretError as exc:
            raise InvalidSpec(str(exc)) from None
        check_value(name, value)
        sealed = self.keyring.seal(name, value)
        async with self.pool.transaction() as conn:
            cur = await conn.execute(query("upsert_secret"), {
                "name": name, "key_id": sealed.key_id, "nonce": sealed.nonce,
                "ciphertext": sealed.ciphertext, "size_bytes": len(value), "actor": actor,
            })
            row = await cur.fetchone()
            assert row is not None
            await audit.record(conn, actor, "secret.set", target=name, allowed=True,
                               detail={"secret": name, "created": row["inserted"],
                                       "key_id": sealed.key_id})
        log.info("secret %r set by %s", name, actor)
        return row, bool(row["inserted"])

    async def delete(self, name: str, actor: str) -> bool:
        async with self.pool.transaction() as conn:
            cur = await conn.execute(query("delete_secret"), {"name": name})
            deleted = await cur.fetchone() is not None
            await audit.record(conn, actor, "secret.delete", target=name, allowed=True,
                               detail={"secret": name, "deleted": deleted})
        if deleted:
            log.info("secret %r deleted by %s", name, actor)
        return deleted

    async def list(self) -> list[Row]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(query("list_secrets"))
            return list(await cur.fetchall())

    async def get(self, name: str) -> bytes:
        async with self.pool.connection() as conn:
            cur = await conn.execute(query("get_secret"), {"name": name})
            row = await cur.fetchone()
        if row is None:
            raise SecretNotFound(f"secret {name!r} does not exist")
        sealed = Sealed(row["key_id"], bytes(row["nonce"]), bytes(row["ciphertext"]))
        return self.keyring.open(name, sealed)

    async def exists(self, name: str) -> bool:
        async with self.pool.connection() as conn:
            cur = await conn.execute(query("existing_secrets"), {"names": [name]})
            return await cur.fetchone() is not None


def build_backends(
    store: SecretStore, options: Mapping[str, Mapping[str, Any]]
) -> dict[str, SecretBackend]:
    """The built-in store plus each backend the config enables (`[secret_backends.NAME]`)."""
    classes = get_host().secret_backends()
    enabled = {BUILTIN: {}, **options}
    backends: dict[str, SecretBackend] = {}
    for name, kwargs in enabled.items():
        cls = classes.get(name)
        if cls is None:
            known = ", ".join(sorted(classes))
            raise ConfigError(f"secret_backends.{name}: no such secret backend "
                              f"(registered: {known})")
        arguments = dict(kwargs)
        if getattr(cls, "uses_store", False):
            arguments["store"] = store
        try:
            backends[name] = cls(**arguments)
        except TypeError as exc:
            raise ConfigError(f"secret_backends.{name}: {exc}") from None
        except SecretError as exc:
            raise ConfigError(f"secret_backends.{name}: {exc}") from None
    return backends


class SecretResolver:
    """Checks at submit that a job's secrets exist; resolves them at dispatch."""

    def __init__(self, pool: Pool, backends: Mapping[str, SecretBackend]) -> None:
        self.pool = pool
        self.backends = dict(backends)

    def _backend(self, ref: str) -> tuple[SecretBackend, str]:
        backend_name, name = split_secret_ref(ref)
        backend = self.backends.get(backend_name)
        if backend is None:
            raise InvalidSpec(
                f"secret {ref!r}: the secret backend {backend_name!r} is not enabled on this "
                f"server (add a [secret_backends.{backend_name}] table to its config)"
            )
        return backend, name

    async def check_exist(self, refs: Sequence[str]) -> None:
        """InvalidSpec naming the first secret that does not exist."""
        for ref in refs:
            backend, name = self._backend(ref)
            try:
                found = await secret_exists(backend, name)
            except SecretError as exc:
                raise InvalidSpec(f"secret {ref!r} cannot be checked: {exc}") from None
            if not found:
                hint = (f" (set it with: hodeictl secret set {name})"
                        if ref == name else "")
                raise InvalidSpec(f"secret {ref!r} does not exist{hint}")

    async def resolve(
        self, job_id: uuid.UUID, attempt: int, worker_id: uuid.UUID,
        refs: Sequence[jobs_pb2.SecretRef],
    ) -> list[agent_pb2.SecretValue]:
        """The values for one attempt, each resolution audited; SecretUnavailable if one
        can't be had (its message names the secret, never a value)."""
        values: list[agent_pb2.SecretValue] = []
        records: list[dict[str, Any]] = []
        failure = ""
        total = 0
        for ref in refs:
            detail: dict[str, Any] = {"secret": ref.name, "attempt": attempt}
            try:
                backend, name = self._backend(ref.name)
                value = await backend.resolve(name)
                if len(value) < MIN_SECRET_BYTES:
                    raise SecretError(f"it is shorter than {MIN_SECRET_BYTES} bytes and could "
                                      "not be redacted from the job's output")
                total += len(value)
                if total > MAX_ATTEMPT_BYTES:
                    raise SecretError(f"the job's secrets exceed {MAX_ATTEMPT_BYTES} bytes")
            except SecretNotFound:
                failure = f"secret {ref.name!r} no longer exists"
            except (SecretError, HodeiError) as exc:  # incl. a key that does not fit
                failure = f"secret {ref.name!r} could not be resolved: {exc}"
            except Exception as exc:
                # A backend's own bug: its message is not ours to vouch for, so only its type.
                log.warning("secret backend failed on %r: %s", ref.name, type(exc).__name__)
                failure = f"secret {ref.name!r} could not be resolved ({type(exc).__name__})"
            else:
                values.append(agent_pb2.SecretValue(name=ref.name, value=value))
            detail["resolved"] = not failure
            records.append(detail)
            if failure:
                break
        async with self.pool.transaction() as conn:
            for detail in records:
                await audit.record(conn, f"worker:{worker_id}", "secret.resolve",
                                   target=str(job_id), allowed=bool(detail["resolved"]),
                                   detail=detail)
        if failure:
            raise SecretUnavailable(failure)
        return values
