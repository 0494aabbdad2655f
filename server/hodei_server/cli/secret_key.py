"""`hodei-server secret-key create|rotate|reencrypt`: the built-in secret store's key file."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from hodei_server import config as config_mod
from hodei_server.errors import ConfigError, HodeiError
from hodei_server.security.secretkeys import Keyring, create_key_file, rotate_key_file
from hodei_server.security.secretstore import SecretStore
from hodei_server.store import db


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hodei-server secret-key",
        description="Manage the key that encrypts the built-in secret store. The database "
                    "never holds it: keep the file (mode 0600) on the server host only.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("create", "write a new key file (refuses to overwrite one)"),
        ("rotate", "add a new current key to the key file; older keys still decrypt"),
        ("reencrypt", "re-encrypt every stored secret with the current key"),
    ):
        command = sub.add_parser(name, help=text)
        command.add_argument("--file", type=Path,
                             help="the key file (default: the config's secret_key_file)")
        command.add_argument("--config", type=Path, help="the server's TOML configuration")
        if name == "reencrypt":
            command.add_argument("--database-url", help="PostgreSQL URL (env HODEI_DATABASE_URL)")
        command.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


async def _reencrypt(url: str, keyring: Keyring) -> int:
    pool = await db.open_pool(url, min_size=1, max_size=1)
    try:
        async with pool.connection() as conn:
            await db.migrate(conn)
        store = SecretStore(pool, keyring)
        count = 0
        for row in await store.list():
            if row["key_id"] != keyring.current_id:
                await store.set(row["name"], await store.get(row["name"]), "operator")
                count += 1
        return count
    finally:
        await pool.close()


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        config = config_mod.load(args.config)
        path = args.file or (Path(config.secret_key_file) if config.secret_key_file else None)
        if args.command == "reencrypt":
            url = args.database_url or config.database_url
            if not url:
                raise ConfigError("no database: give --database-url, --config or "
                                  "HODEI_DATABASE_URL")
            keyring = Keyring.load(str(path) if path else "")
            count = asyncio.run(_reencrypt(url, keyring))
            print(f"re-encrypted {count} secret(s) with key {keyring.current_id}")
            return 0
        if path is None:
            raise ConfigError("give --file PATH (or --config with secret_key_file)")
        if args.command == "create":
            try:
                key = create_key_file(path)
            except FileExistsError:
                raise ConfigError(f"{path} already exists; 'rotate' adds a key to it") from None
            print(f"created {path} (mode 0600) with key {key}; set secret_key_file = "
                  f"\"{path}\" in the server config")
        else:
            key = rotate_key_file(path)
            print(f"{path}: new current key {key}; run 'hodei-server secret-key reencrypt' "
                  "and restart the servers")
    except HodeiError as exc:
        if args.debug:
            raise
        print(f"hodei-server secret-key: {exc.message}", file=sys.stderr)
        return 1
    except OSError as exc:
        if args.debug:
            raise
        print(f"hodei-server secret-key: {exc.strerror or exc}: {exc.filename}", file=sys.stderr)
        return 1
    return 0
