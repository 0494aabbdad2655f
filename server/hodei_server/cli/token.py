"""`hodei-server token create`: a one-time bootstrap token for an agent on another machine.

Minting talks to PostgreSQL directly, so only whoever can reach the server's database (an
operator on the server host) can let a new machine join.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from pathlib import Path
from typing import Annotated

import typer

from hodei_server.cli.database import database_url_from, migrated_pool
from hodei_server.cli.reporting import ReportingGroup, remember_debug
from hodei_server.errors import InvalidSpec
from hodei_server.security import apitokens, audit
from hodei_server.security.apitokens import Role
from hodei_server.store.jobs import JobStore
from hodei_server.store.workers import WorkerStore
from hodei_server.validation import validate_labels

MAX_TTL_SECONDS = 30 * 24 * 3600
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_ttl(text: str) -> float:
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise InvalidSpec(f"--ttl expects a duration such as 600, 30m, 12h or 7d; got {text!r}")
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if not 1 <= seconds <= MAX_TTL_SECONDS:
        raise InvalidSpec("--ttl must be between 1 second and 30 days")
    return seconds


def parse_expiry(text: str) -> float:
    """An API token's lifetime in seconds; 0 (never) for "", "0" or "never"."""
    if text.strip().lower() in ("", "0", "never"):
        return 0.0
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise InvalidSpec(f"--expires expects a duration such as 12h, 30d or never; got {text!r}")
    return apitokens.validate_ttl(float(match.group(1)) * _UNITS[match.group(2)])


def parse_labels(items: list[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidSpec(f"--label expects KEY=VALUE, got {item!r}")
        labels[key] = value
    validate_labels(labels, "labels")
    return labels


app = typer.Typer(
    cls=ReportingGroup,
    help="Create a one-time bootstrap token with which an agent registers, or (--api) an API "
         "token, such as the first admin's.",
    no_args_is_help=True,
)


async def _create(url: str, provider: str, labels: dict[str, str], ttl: float) -> str:
    async with migrated_pool(url) as pool:
        return await WorkerStore(pool, JobStore(pool)).create_bootstrap_token(
            provider, labels, ttl
        )


async def _create_api(url: str, name: str, role: Role, ttl: float) -> tuple[str, str]:
    """(token, expiry text) of a new API token; created by "operator" (database access)."""
    async with migrated_pool(url) as pool:
        row, token = await apitokens.TokenStore(pool).create(
            name, role, ttl, audit.OPERATOR, "hodei-server token create --api")
        return token, apitokens.expiry_text(row)


@app.command("create")
def create(
    config: Annotated[Path | None, typer.Option(
        "--config", help="the server's TOML configuration (for database_url)")] = None,
    database_url: Annotated[str | None, typer.Option(
        "--database-url", help="PostgreSQL URL (env HODEI_DATABASE_URL)")] = None,
    label: Annotated[list[str] | None, typer.Option(
        "--label", metavar="K=V",
        help="label every worker registered with it gets (repeatable)")] = None,
    provider: Annotated[str, typer.Option(
        "--provider", help="provider name recorded for the worker")] = "manual",
    ttl: Annotated[str, typer.Option("--ttl", help="how long it may be used")] = "1h",
    api: Annotated[bool, typer.Option(
        "--api", help="an API token for hodeictl and scripts instead of a bootstrap token",
    )] = False,
    name: Annotated[str | None, typer.Option(
        "--name", help="--api: the token's unique name (who jobs record)")] = None,
    role: Annotated[str, typer.Option(
        "--role", help="--api: viewer, submitter, operator or admin")] = "",
    expires: Annotated[str, typer.Option(
        "--expires", help="--api: lifetime such as 12h or 90d")] = "never",
    debug: Annotated[bool, typer.Option(
        "--debug", help="show tracebacks", callback=remember_debug)] = False,
) -> None:
    """Print a new bootstrap token (or --api token)."""
    url = database_url_from(database_url, config)
    if api:
        _create_api_token(url, name or "", role, expires)
        return
    if not re.fullmatch(r"[A-Za-z0-9][-A-Za-z0-9_.]{0,62}", provider):
        raise InvalidSpec("--provider must be a short name (letters, digits, '-', '_', '.')")
    seconds = parse_ttl(ttl)
    token = asyncio.run(_create(url, provider, parse_labels(label or []), seconds))
    valid_until = dt.datetime.now().astimezone() + dt.timedelta(seconds=seconds)
    typer.echo(token)
    typer.echo(
        f"One-time token, valid until {valid_until:%Y-%m-%d %H:%M %Z}. On the new machine:\n"
        f"  HODEI_BOOTSTRAP_TOKEN=<token> hodei-agent --server <server address>",
        err=True,
    )


def _create_api_token(url: str, name: str, role_name: str, expires: str) -> None:
    if not name or not role_name:
        raise InvalidSpec("--api needs --name NAME and --role ROLE")
    role = Role.parse(role_name)
    token, expiry = asyncio.run(
        _create_api(url, apitokens.validate_name(name), role, parse_expiry(expires)))
    typer.echo(token)
    typer.echo(
        f"API token '{name}' ({role}), expires: {expiry}. It is shown only this once.\n"
        f"  hodeictl context set NAME --server <server address> --token-stdin  (paste it)",
        err=True,
    )
