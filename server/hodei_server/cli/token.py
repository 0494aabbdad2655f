"""`hodei-server token create`: a one-time bootstrap token for an agent on another machine.

Minting talks to PostgreSQL directly, so only whoever can reach the server's database (an
operator on the server host) can let a new machine join.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import re
import sys
from pathlib import Path

from hodei_server import config as config_mod
from hodei_server.errors import ConfigError, HodeiError, InvalidSpec
from hodei_server.security import apitokens, audit
from hodei_server.security.apitokens import Role
from hodei_server.store import db
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hodei-server token",
        description="Create a one-time bootstrap token with which an agent registers, or "
                    "(--api) an API token, such as the first admin's.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create", help="print a new bootstrap token (or --api token)")
    create.add_argument("--config", type=Path,
                        help="the server's TOML configuration (for database_url)")
    create.add_argument("--database-url", help="PostgreSQL URL (env HODEI_DATABASE_URL)")
    create.add_argument("--label", action="append", default=[], metavar="K=V",
                        help="label every worker registered with it gets (repeatable)")
    create.add_argument("--provider", default="manual",
                        help="provider name recorded for the worker (default: manual)")
    create.add_argument("--ttl", default="1h", help="how long it may be used (default 1h)")
    create.add_argument("--api", action="store_true",
                        help="an API token for hodeictl and scripts instead of a bootstrap token")
    create.add_argument("--name", help="--api: the token's unique name (who jobs record)")
    create.add_argument("--role", default="", help="--api: viewer, submitter, operator or admin")
    create.add_argument("--expires", default="never",
                        help="--api: lifetime such as 12h or 90d (default: never)")
    create.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


async def _create(url: str, provider: str, labels: dict[str, str], ttl: float) -> str:
    pool = await db.open_pool(url, min_size=1, max_size=1)
    try:
        async with pool.connection() as conn:
            await db.migrate(conn)
        return await WorkerStore(pool, JobStore(pool)).create_bootstrap_token(
            provider, labels, ttl
        )
    finally:
        await pool.close()


async def _create_api(url: str, name: str, role: Role, ttl: float) -> tuple[str, str]:
    """(token, expiry text) of a new API token; created by "operator" (database access)."""
    pool = await db.open_pool(url, min_size=1, max_size=1)
    try:
        async with pool.connection() as conn:
            await db.migrate(conn)
        row, token = await apitokens.TokenStore(pool).create(
            name, role, ttl, audit.OPERATOR, "hodei-server token create --api")
        return token, apitokens.expiry_text(row)
    finally:
        await pool.close()


def _main_api(args: argparse.Namespace, url: str) -> int:
    if not args.name or not args.role:
        raise InvalidSpec("--api needs --name NAME and --role ROLE")
    role = Role.parse(args.role)
    token, expires = asyncio.run(
        _create_api(url, apitokens.validate_name(args.name), role, parse_expiry(args.expires)))
    print(token)
    print(
        f"API token '{args.name}' ({role}), expires: {expires}. It is shown only this once.\n"
        f"  hodeictl context set NAME --server <server address> --token-stdin  (paste it)",
        file=sys.stderr,
    )
    return 0


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        config = config_mod.load(args.config)
        url = args.database_url or config.database_url
        if not url:
            raise ConfigError("no database: give --database-url, --config or HODEI_DATABASE_URL")
        if args.api:
            return _main_api(args, url)
        if not re.fullmatch(r"[A-Za-z0-9][-A-Za-z0-9_.]{0,62}", args.provider):
            raise InvalidSpec("--provider must be a short name (letters, digits, '-', '_', '.')")
        ttl = parse_ttl(args.ttl)
        token = asyncio.run(_create(url, args.provider, parse_labels(args.label), ttl))
    except HodeiError as exc:
        if args.debug:
            raise
        print(f"hodei-server token: {exc.message}", file=sys.stderr)
        return 1
    expires = dt.datetime.now().astimezone() + dt.timedelta(seconds=ttl)
    print(token)
    print(
        f"One-time token, valid until {expires:%Y-%m-%d %H:%M %Z}. On the new machine:\n"
        f"  HODEI_BOOTSTRAP_TOKEN=<token> hodei-agent --server <server address>",
        file=sys.stderr,
    )
    return 0
