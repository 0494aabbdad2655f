"""Shared fixtures: a real PostgreSQL, one fresh database per test."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo


def _admin_execute(url: str, sql: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.encode())


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """HODEI_TEST_DATABASE_URL if set, else a private PostgreSQL started for the session."""
    url = os.environ.get("HODEI_TEST_DATABASE_URL")
    if url:
        yield url
        return
    import pgserver

    # Not under pytest's basetemp: a concurrent pytest session prunes old basetemps.
    data = Path(tempfile.mkdtemp(prefix="hodei-test-pg-"))
    handle = pgserver.get_server(data, cleanup_mode="stop")
    try:
        yield handle.get_uri()
    finally:
        handle.cleanup()
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="session")
def template_db(pg_admin_url: str) -> Iterator[str]:
    """A database with every migration applied, copied for each test."""
    from hodei_server.store import db

    name = f"hodei_tpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    _admin_execute(pg_admin_url, f'CREATE DATABASE "{name}"')
    url = make_conninfo(pg_admin_url, dbname=name)

    async def apply() -> None:
        async with await psycopg.AsyncConnection.connect(url) as conn:
            conn.row_factory = psycopg.rows.dict_row  # type: ignore[assignment]
            await db.migrate(conn)  # type: ignore[arg-type]

    asyncio.run(apply())
    try:
        yield name
    finally:
        _admin_execute(pg_admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database_url(pg_admin_url: str, template_db: str) -> Iterator[str]:
    """A fresh database (schema applied) for one test."""
    name = f"hodei_t_{uuid.uuid4().hex[:12]}"
    _admin_execute(pg_admin_url, f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    try:
        yield make_conninfo(pg_admin_url, dbname=name)
    finally:
        _admin_execute(pg_admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def empty_database_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh database with no schema at all."""
    name = f"hodei_e_{uuid.uuid4().hex[:12]}"
    _admin_execute(pg_admin_url, f'CREATE DATABASE "{name}"')
    try:
        yield make_conninfo(pg_admin_url, dbname=name)
    finally:
        _admin_execute(pg_admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
