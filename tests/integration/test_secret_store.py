"""The encrypted secret store and the resolver against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

import psycopg
import pytest

from hodei_api.v1 import jobs_pb2
from hodei_plugins.secrets import SecretNotFound
from hodei_server.errors import ConfigError, InvalidSpec
from hodei_server.security.secretkeys import Keyring, NoSecretKey
from hodei_server.security.secretstore import (
    SecretResolver,
    SecretStore,
    SecretUnavailable,
    build_backends,
)
from hodei_server.store import db

T = TypeVar("T")
VALUE = b"correct horse battery staple"


def run(database_url: str, body: Callable[[SecretStore], Awaitable[T]],
        keyring: Keyring | None = None) -> T:
    async def main() -> T:
        pool = await db.open_pool(database_url, min_size=1, max_size=4)
        try:
            return await body(SecretStore(pool, keyring or Keyring([os.urandom(32)])))
        finally:
            await pool.close()

    return asyncio.run(main())


def audit_rows(url: str) -> list[tuple[str, str, str, bool, dict[str, object]]]:
    with psycopg.connect(url) as conn:
        return conn.execute(  # type: ignore[return-value]
            "SELECT actor, action, target, allowed, detail FROM audit_log ORDER BY id"
        ).fetchall()


def test_set_get_list_delete(database_url: str) -> None:
    async def body(store: SecretStore) -> None:
        row, created = await store.set("DB", VALUE, "client:test")
        assert created and row["size_bytes"] == len(VALUE)
        _, created = await store.set("DB", VALUE + b"!", "client:test")
        assert not created
        assert await store.get("DB") == VALUE + b"!"
        assert await store.exists("DB") and not await store.exists("OTHER")
        assert [r["name"] for r in await store.list()] == ["DB"]
        assert "ciphertext" not in (await store.list())[0]
        assert await store.delete("DB", "client:test")
        assert not await store.delete("DB", "client:test")
        with pytest.raises(SecretNotFound):
            await store.get("DB")

    run(database_url, body)
    actions = [(r[1], r[2]) for r in audit_rows(database_url)]
    assert actions == [("secret.set", "DB")] * 2 + [("secret.delete", "DB")] * 2
    assert all(VALUE not in repr(r).encode() for r in audit_rows(database_url))


def test_values_are_checked_before_they_are_stored(database_url: str) -> None:
    async def body(store: SecretStore) -> None:
        with pytest.raises(InvalidSpec, match="shorter than 4 bytes"):
            await store.set("DB", b"abc", "t")
        with pytest.raises(InvalidSpec, match="larger than"):
            await store.set("DB", b"x" * (64 * 1024 + 1), "t")
        with pytest.raises(InvalidSpec, match="is not a secret name"):
            await store.set("../DB", VALUE, "t")

    run(database_url, body)

    async def keyless(store: SecretStore) -> None:
        with pytest.raises(NoSecretKey):
            await store.set("DB", VALUE, "t")

    run(database_url, keyless, Keyring([]))


def test_resolution_is_audited_and_fails_by_name(database_url: str) -> None:
    job_id, worker_id = uuid.uuid4(), uuid.uuid4()

    async def body(store: SecretStore) -> None:
        await store.set("DB", VALUE, "t")
        env = {"prefix": "HODEI_TEST_SECRET_"}
        os.environ["HODEI_TEST_SECRET_TINY"] = "ab"
        try:
            resolver = SecretResolver(store.pool, build_backends(store, {"env": env}))
            values = await resolver.resolve(job_id, 3, worker_id,
                                             [jobs_pb2.SecretRef(name="DB")])
            assert [(v.name, v.value) for v in values] == [("DB", VALUE)]
            await resolver.check_exist(["DB"])
            with pytest.raises(InvalidSpec, match=r"secret 'NOPE' does not exist \(set it"):
                await resolver.check_exist(["DB", "NOPE"])
            with pytest.raises(InvalidSpec, match="backend 'vault' is not enabled"):
                await resolver.check_exist(["vault:DB"])
            with pytest.raises(SecretUnavailable, match="shorter than 4 bytes"):
                await resolver.resolve(job_id, 4, worker_id,
                                       [jobs_pb2.SecretRef(name="env:TINY")])
            await store.delete("DB", "t")
            with pytest.raises(SecretUnavailable, match=r"^secret 'DB' no longer exists$"):
                await resolver.resolve(job_id, 5, worker_id, [jobs_pb2.SecretRef(name="DB")])
        finally:
            del os.environ["HODEI_TEST_SECRET_TINY"]

    run(database_url, body)
    resolves = [r for r in audit_rows(database_url) if r[1] == "secret.resolve"]
    assert [(r[0], r[2], r[3], r[4]["secret"], r[4]["attempt"]) for r in resolves] == [
        (f"worker:{worker_id}", str(job_id), True, "DB", 3),
        (f"worker:{worker_id}", str(job_id), False, "env:TINY", 4),
        (f"worker:{worker_id}", str(job_id), False, "DB", 5),
    ]


def test_backend_config_mistakes_are_config_errors(database_url: str) -> None:
    async def body(store: SecretStore) -> None:
        with pytest.raises(ConfigError, match="no such secret backend"):
            build_backends(store, {"nope": {}})
        with pytest.raises(ConfigError, match=r"secret_backends\.file: .*unexpected keyword"):
            build_backends(store, {"file": {"dir": "/x"}})
        with pytest.raises(ConfigError, match=r"secret_backends\.vault: vault: url must be"):
            build_backends(store, {"vault": {"url": "nowhere"}})

    run(database_url, body)
