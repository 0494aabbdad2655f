"""PostgreSQL connection pool and schema migrations."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import psycopg
from psycopg import pq
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

from hodei_server.errors import DatabaseUnavailable
from hodei_server.store import sqlfiles

log = logging.getLogger(__name__)

# Arbitrary but fixed: serialises migrations across replicas starting together.
_MIGRATION_LOCK = 0x48_4F_44_45_49_01

Conn = psycopg.AsyncConnection[DictRow]


class Pool(AsyncConnectionPool[Conn]):
    """Connections in autocommit mode: a lone statement is its own transaction (one round
    trip, not BEGIN/statement/COMMIT). Work that must be atomic, or holds row locks across
    statements, takes `transaction()`."""

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Conn]:
        async with self.connection() as conn, conn.transaction():
            yield conn


def atomic(conn: Conn) -> contextlib.AbstractAsyncContextManager[object]:
    """A transaction on `conn`, unless it is in one already (no savepoint needed then)."""
    if conn.info.transaction_status == pq.TransactionStatus.IDLE:
        return conn.transaction()
    return contextlib.nullcontext()


async def open_pool(url: str, *, min_size: int = 2, max_size: int = 10) -> Pool:
    """An open pool, or DatabaseUnavailable saying which database could not be reached."""
    try:
        # One direct attempt first: a clear error at once rather than the pool's retries.
        probe = await psycopg.AsyncConnection.connect(url, connect_timeout=10)
        await probe.close()
    except psycopg.Error as exc:
        raise DatabaseUnavailable(
            f"cannot connect to PostgreSQL at {describe_url(url)}: {first_line(exc)}"
        ) from exc
    pool = Pool(
        url,
        connection_class=psycopg.AsyncConnection[DictRow],
        min_size=min_size,
        max_size=max_size,
        open=False,
        kwargs={"row_factory": dict_row, "autocommit": True},
        timeout=10.0,
        name="hodei",
    )
    try:
        await pool.open(wait=True, timeout=15.0)
    except Exception as exc:
        await pool.close()
        raise DatabaseUnavailable(
            f"cannot connect to PostgreSQL at {describe_url(url)}: {first_line(exc)}"
        ) from exc
    return pool


def describe_url(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "<unparseable database URL>"
    host = info.get("host") or "localhost"
    port = info.get("port") or "5432"
    return f"{host}:{port}/{info.get('dbname') or ''}"


def first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


async def migrate(conn: psycopg.AsyncConnection[DictRow]) -> list[str]:
    """Apply pending migrations; safe when several servers start at once."""
    applied_now: list[str] = []
    async with conn.transaction():
        await conn.execute(sqlfiles.query("lock_migrations"), {"key": _MIGRATION_LOCK})
        await conn.execute(sqlfiles.query("create_migrations_table"))
        cur = await conn.execute(sqlfiles.query("applied_migrations"))
        rows = await cur.fetchall()
        done = {row["version"] for row in rows}
        for version, name, sql in sqlfiles.migrations():
            if version in done:
                continue
            await conn.execute(sql.encode())
            await conn.execute(sqlfiles.query("record_migration"),
                               {"version": version, "name": name})
            applied_now.append(name)
    for name in applied_now:
        log.info("applied migration %s", name)
    return applied_now
