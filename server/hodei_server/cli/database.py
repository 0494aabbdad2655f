"""The database a subcommand works on: found from its flags, opened migrated."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from hodei_server import config as config_mod
from hodei_server.errors import ConfigError
from hodei_server.store import db


def database_url_from(database_url: str | None, config: Path | None) -> str:
    """--database-url, else the config's database_url (or HODEI_DATABASE_URL)."""
    url = database_url or config_mod.load(config).database_url
    if not url:
        raise ConfigError("no database: give --database-url, --config or HODEI_DATABASE_URL")
    return url


@contextlib.asynccontextmanager
async def migrated_pool(url: str) -> AsyncIterator[db.Pool]:
    """A one-connection pool on a database migrated to this version's schema."""
    pool = await db.open_pool(url, min_size=1, max_size=1)
    try:
        async with pool.connection() as conn:
            await db.migrate(conn)
        yield pool
    finally:
        await pool.close()
