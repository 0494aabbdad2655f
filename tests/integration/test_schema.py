"""Migrations: they yield schema.sql, and two servers may apply them at once."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import psycopg

from hodei_server.store import db, sqlfiles

CATALOG = {
    "columns": """
        SELECT table_name, column_name, data_type, is_nullable, column_default
        FROM information_schema.columns WHERE table_schema = 'public'
          AND table_name <> 'hodei_migrations'
        ORDER BY 1, 2""",
    "indexes": """
        SELECT tablename, indexname, indexdef FROM pg_indexes
        WHERE schemaname = 'public' AND tablename <> 'hodei_migrations' ORDER BY 1, 2""",
    "constraints": """
        SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
        FROM pg_constraint WHERE connamespace = 'public'::regnamespace
          AND conrelid::regclass::text <> 'hodei_migrations'
        ORDER BY 1, 2""",
    "functions": """
        SELECT proname, pg_get_function_arguments(oid), pg_get_function_result(oid), prosrc,
               proconfig
        FROM pg_proc WHERE pronamespace = 'public'::regnamespace ORDER BY 1, 2""",
}


def catalog(url: str) -> dict[str, list[Any]]:
    with psycopg.connect(url) as conn:
        return {name: conn.execute(sql).fetchall() for name, sql in CATALOG.items()}


def test_migrations_yield_schema_sql(database_url: str, empty_database_url: str) -> None:
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        conn.execute(sqlfiles.schema().encode())
    from_migrations = catalog(database_url)
    from_schema = catalog(empty_database_url)
    assert from_migrations["columns"], "no tables were created"
    assert from_migrations == from_schema


def test_two_servers_migrating_an_empty_database_both_succeed(empty_database_url: str) -> None:
    async def one() -> list[str]:
        async with await psycopg.AsyncConnection.connect(
            empty_database_url, row_factory=psycopg.rows.dict_row
        ) as conn:
            return await db.migrate(conn)

    async def both() -> list[list[str]]:
        return list(await asyncio.gather(one(), one(), one()))

    results = asyncio.run(both())
    applied = [name for result in results for name in result]
    assert sorted(applied) == sorted(name for _, name, _ in sqlfiles.migrations())


def test_every_named_query_is_used(repo_root: Path) -> None:
    folders = ("server/hodei_server", "plugins/hodei_plugins", "ssh/hodei_ssh")
    sources = "".join(
        p.read_text() for folder in folders for p in (repo_root / folder).rglob("*.py")
    )
    unused = [name for name in sqlfiles.queries() if f'query("{name}")' not in sources]
    assert unused == []
