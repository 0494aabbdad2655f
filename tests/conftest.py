"""Shared fixtures: a real PostgreSQL, one fresh database per test."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

_SERIAL = Path(__file__).resolve().parent / "faults"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The fault tests kill, stop and time things: they run alone (`-m serial`), after
    the rest has run side by side (scripts/test.sh)."""
    for item in items:
        if _SERIAL in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.serial)


def _admin_execute(url: str, sql: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.encode())


# The session's private PostgreSQL, when the tests started one (no HODEI_TEST_DATABASE_URL).
_PRIVATE: dict[str, Any] = {}


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
    _PRIVATE.update(handle=handle, pid=handle.get_pid())
    try:
        yield handle.get_uri()
    finally:
        _PRIVATE.clear()
        handle.cleanup()
        shutil.rmtree(data, ignore_errors=True)


def _process_state(pid: int) -> str:
    """The state letter of process `pid` ("Z" for a zombie), "" once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return ""


def _revive_private_postgres() -> str | None:
    """If the session's PostgreSQL is gone, start it again and say so (with the end of its
    log); None while it runs."""
    handle, pid = _PRIVATE.get("handle"), _PRIVATE.get("pid")
    if handle is None or pid is None or _process_state(pid) not in ("", "Z", "X"):
        return None
    # A postmaster not yet reaped still looks alive to pg_ctl and pgserver.
    deadline = time.monotonic() + 30
    while _process_state(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    log = Path(handle.log)
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    handle._postmaster_info = None
    handle.ensure_postgres_running()
    _PRIVATE["pid"] = handle.get_pid()
    last = lines[-1] if lines else "(no log)"
    tail = "\n".join(lines[-40:])
    return (f"the tests' PostgreSQL (pid {pid}) stopped during this test (started again); "
            f"its log ends: {last}\n{tail}")


@pytest.fixture(autouse=True)
def _private_postgres_survives() -> Iterator[None]:
    """A test after which the session's PostgreSQL is gone fails, saying so, and it is
    started again: the tests after it do not all fail for it."""
    yield
    if (gone := _revive_private_postgres()) is not None:
        pytest.fail(gone)


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
        gone = _revive_private_postgres()
        _admin_execute(pg_admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if gone is not None:
            pytest.fail(gone)


@pytest.fixture
def empty_database_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh database with no schema at all."""
    name = f"hodei_e_{uuid.uuid4().hex[:12]}"
    _admin_execute(pg_admin_url, f'CREATE DATABASE "{name}"')
    try:
        yield make_conninfo(pg_admin_url, dbname=name)
    finally:
        gone = _revive_private_postgres()
        _admin_execute(pg_admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if gone is not None:
            pytest.fail(gone)


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
