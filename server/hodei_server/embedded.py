"""The embedded local stack: private PostgreSQL + server + `local` provider.

`python -m hodei_server.embedded --home DIR` is what `hodeictl` starts when no server is
configured. When the server is ready it writes DIR/stack.json; it removes the file on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from hodei_plugins.local import LocalProviderConfig
from hodei_server.app import serve, setup_logging
from hodei_server.config import ServerConfig
from hodei_server.errors import DatabaseUnavailable, HodeiError
from hodei_server.security import apitokens, audit
from hodei_server.security.apitokens import Role
from hodei_server.security.secretkeys import ensure_key_file
from hodei_server.store.sqlfiles import query

log = logging.getLogger(__name__)

STACK_FILE = "stack.json"
# The admin token the stack makes for its user at each start (the previous one is revoked).
LOCAL_ADMIN = "local-admin"
STACK_ACTOR = "embedded-stack"


def start_private_postgres(home: Path) -> tuple[Any, str]:
    """Start (or reuse) the private PostgreSQL under HOME/postgres: (handle, URL)."""
    import pgserver  # only the embedded stack needs it

    data = home / "postgres"
    data.mkdir(parents=True, exist_ok=True)
    try:
        handle = pgserver.get_server(data, cleanup_mode="stop")
    except Exception as exc:
        raise DatabaseUnavailable(
            f"could not start the private PostgreSQL in {data}: {exc}"
        ) from exc
    admin_url = handle.get_uri()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute(query("database_exists"), {"name": "hodei"}).fetchone()
        if not exists:
            conn.execute(query("create_embedded_database"))
    return handle, handle.get_uri("hodei")


def write_stack_file(home: Path, address: str, database_url: str, token: str) -> None:
    """stack.json, readable by the user only: it holds the admin token hodeictl sends."""
    path = home / STACK_FILE
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        json.dump({
            "pid": os.getpid(),
            "address": address,
            "database_url": database_url,
            "started_at": time.time(),
            "token": token,
        }, file)
    tmp.replace(path)


async def rotate_local_admin(database_url: str) -> str:
    """A new admin token for the stack's user; the one of the previous start is revoked."""
    token, token_id, secret_hash = apitokens.new_token()
    async with await psycopg.AsyncConnection.connect(database_url, row_factory=dict_row) as conn:
        async with conn.transaction():
            await conn.execute(query("revoke_api_token"), {"name": LOCAL_ADMIN})
            await apitokens.create_in(conn, token_id, secret_hash, LOCAL_ADMIN, Role.ADMIN, 0.0,
                                      STACK_ACTOR)
            await audit.record(conn, STACK_ACTOR, "embedded stack start", target=LOCAL_ADMIN,
                               allowed=True, detail={"role": "admin", "token_id": token_id})
    return token


def remove_stack_file(home: Path) -> None:
    path = home / STACK_FILE
    with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()


SECRET_KEY_FILE = "secret.key"


def embedded_config(database_url: str, listen: str, home: Path | None = None) -> ServerConfig:
    """The stack's server config; with `home`, its secret store's key is HOME/secret.key
    (created, mode 0600, on first use)."""
    key_file = ""
    if home is not None:
        key_file = str(home / SECRET_KEY_FILE)
        ensure_key_file(Path(key_file))
    return ServerConfig(
        listen=listen,
        database_url=database_url,
        secret_key_file=key_file,
        providers=[LocalProviderConfig(name="local", min_workers=1, max_workers=2, slots=4,
                                       idle_timeout=600.0)],
    )


async def _run(home: Path, database_url: str, listen: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)

    async def ready(address: str) -> None:
        # Made once the server has migrated the database; before stack.json, which says "ready".
        token = await rotate_local_admin(database_url)
        write_stack_file(home, address, database_url, token)
        log.info("embedded stack ready at %s (home %s)", address, home)

    try:
        await serve(embedded_config(database_url, listen, home), stop, on_ready=ready)
    finally:
        remove_stack_file(home)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hodei-embedded",
                                     description="Run the embedded local Hodei stack.")
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    home: Path = args.home.expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    # Its token and database are its user's alone.
    home.chmod(0o700)
    handle = None
    try:
        database_url = os.environ.get("HODEI_DATABASE_URL", "")
        if not database_url:
            handle, database_url = start_private_postgres(home)
        asyncio.run(_run(home, database_url, args.listen))
    except HodeiError as exc:
        if args.debug:
            raise
        print(f"hodei: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        if handle is not None:
            handle.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
