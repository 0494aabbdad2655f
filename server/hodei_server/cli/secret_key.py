"""`hodei-server secret-key create|rotate|reencrypt`: the built-in secret store's key file."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from hodei_server import config as config_mod
from hodei_server.cli.database import database_url_from, migrated_pool
from hodei_server.cli.reporting import ReportingGroup, remember_debug
from hodei_server.errors import ConfigError
from hodei_server.security.secretkeys import Keyring, create_key_file, rotate_key_file
from hodei_server.security.secretstore import SecretStore

app = typer.Typer(
    cls=ReportingGroup,
    help="Manage the key that encrypts the built-in secret store. The database never holds "
         "it: keep the file (mode 0600) on the server host only.",
    no_args_is_help=True,
)

KeyFile = Annotated[Path | None, typer.Option(
    "--file", help="the key file (default: the config's secret_key_file)")]
ConfigFile = Annotated[Path | None, typer.Option(
    "--config", help="the server's TOML configuration")]
Debug = Annotated[bool, typer.Option("--debug", help="show tracebacks", callback=remember_debug)]


def _key_file(file: Path | None, config: Path | None) -> Path | None:
    if file is not None:
        return file
    configured = config_mod.load(config).secret_key_file
    return Path(configured) if configured else None


def _required_key_file(file: Path | None, config: Path | None) -> Path:
    path = _key_file(file, config)
    if path is None:
        raise ConfigError("give --file PATH (or --config with secret_key_file)")
    return path


@app.command("create")
def create(file: KeyFile = None, config: ConfigFile = None, debug: Debug = False) -> None:
    """Write a new key file (refuses to overwrite one)."""
    path = _required_key_file(file, config)
    try:
        key = create_key_file(path)
    except FileExistsError:
        raise ConfigError(f"{path} already exists; 'rotate' adds a key to it") from None
    typer.echo(f"created {path} (mode 0600) with key {key}; set secret_key_file = "
               f"\"{path}\" in the server config")


@app.command("rotate")
def rotate(file: KeyFile = None, config: ConfigFile = None, debug: Debug = False) -> None:
    """Add a new current key to the key file; older keys still decrypt."""
    path = _required_key_file(file, config)
    key = rotate_key_file(path)
    typer.echo(f"{path}: new current key {key}; run 'hodei-server secret-key reencrypt' "
               "and restart the servers")


async def _reencrypt(url: str, keyring: Keyring) -> int:
    async with migrated_pool(url) as pool:
        store = SecretStore(pool, keyring)
        count = 0
        for row in await store.list():
            if row["key_id"] != keyring.current_id:
                await store.set(row["name"], await store.get(row["name"]), "operator")
                count += 1
        return count


@app.command("reencrypt")
def reencrypt(
    file: KeyFile = None,
    config: ConfigFile = None,
    database_url: Annotated[str | None, typer.Option(
        "--database-url", help="PostgreSQL URL (env HODEI_DATABASE_URL)")] = None,
    debug: Debug = False,
) -> None:
    """Re-encrypt every stored secret with the current key."""
    url = database_url_from(database_url, config)
    path = _key_file(file, config)
    keyring = Keyring.load(str(path) if path else "")
    count = asyncio.run(_reencrypt(url, keyring))
    typer.echo(f"re-encrypted {count} secret(s) with key {keyring.current_id}")
