"""API tokens: roles, the token format, and their storage (hashed only).

A token reads `hodei_<id>_<secret>`: `id` (16 hex digits) finds the row, `secret` (256 random
bits) is compared in constant time against the sha256 stored for it. The secret is shown once,
at creation; only its hash reaches the database. sha256 without salt or stretching is enough
because the secret is random and long, not a password a person chose.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from hodei_api.v1 import auth_pb2
from hodei_server.errors import Conflict, InvalidSpec, NotFound
from hodei_server.security import audit
from hodei_server.store.db import Conn, Pool
from hodei_server.store.sqlfiles import query

PREFIX = "hodei_"
ID_HEX_DIGITS = 16
SECRET_BYTES = 32
MAX_TTL_SECONDS = 10 * 366 * 24 * 3600
_TOKEN = re.compile(rf"{PREFIX}([0-9a-f]{{{ID_HEX_DIGITS}}})_([A-Za-z0-9_-]{{43}})")
_NAME = re.compile(r"[A-Za-z0-9][-A-Za-z0-9_.@]{0,62}")

Row = dict[str, Any]

# The longest a replica answers from its cached copy of a token row: the bound on how long a
# revocation can go unnoticed when its notification was missed (the listener was down).
CACHE_SECONDS = 5.0
_CACHE_LIMIT = 10_000


class Role(enum.IntEnum):
    """What a token may do; each role includes the ones below it."""

    VIEWER = 1
    SUBMITTER = 2
    OPERATOR = 3
    ADMIN = 4

    def __str__(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            names = ", ".join(str(r) for r in cls)
            raise InvalidSpec(f"unknown role {text!r} (one of: {names})") from None

    @classmethod
    def from_proto(cls, value: int) -> Role:
        try:
            return cls(value)
        except ValueError:
            raise InvalidSpec("a role is required: viewer, submitter, operator or admin") from None

    def to_proto(self) -> auth_pb2.Role.ValueType:
        return auth_pb2.Role.Value(f"ROLE_{self.name}")


@dataclass(frozen=True)
class Principal:
    """Who a call comes from: an API token that was found valid."""

    token_id: str
    name: str
    role: Role

    @property
    def actor(self) -> str:
        return f"token:{self.name}"


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def new_token() -> tuple[str, str, bytes]:
    """(the token to hand out, its id, the hash to store)."""
    token_id = secrets.token_hex(ID_HEX_DIGITS // 2)
    secret = secrets.token_urlsafe(SECRET_BYTES)
    return f"{PREFIX}{token_id}_{secret}", token_id, hash_secret(secret)


def parse(token: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed API token, else None."""
    match = _TOKEN.fullmatch(token)
    return (match.group(1), match.group(2)) if match else None


def looks_like_api_token(token: str) -> bool:
    return token.startswith(PREFIX)


def validate_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise InvalidSpec(
            "a token name is 1-63 letters, digits, '-', '_', '.' or '@', starting with a "
            "letter or digit"
        )
    return name


def validate_ttl(ttl_seconds: float) -> float:
    if ttl_seconds != 0 and not 1 <= ttl_seconds <= MAX_TTL_SECONDS:
        raise InvalidSpec("a token's lifetime is 0 (never expires) or 1 second to 10 years")
    return ttl_seconds


def is_expired(row: Row) -> bool:
    expires_at = row["expires_at"]
    return expires_at is not None and bool(expires_at <= dt.datetime.now(dt.UTC))


def secret_matches(row: Row, secret: str) -> bool:
    return hmac.compare_digest(bytes(row["secret_hash"]), hash_secret(secret))


class TokenStore:
    """The api_tokens table. Creating and revoking write their audit row in the same
    transaction, so a token never exists without the record of who made it."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        # token id -> (row, when it was read): API calls come many per second from one
        # token; reading its row for each would cost a database round trip per call.
        self._cache: dict[str, tuple[Row, float]] = {}

    async def create(
        self, name: str, role: Role, ttl_seconds: float, actor: str, action: str
    ) -> tuple[Row, str]:
        """(the new row, the token to show once)."""
        validate_name(name)
        validate_ttl(ttl_seconds)
        token, token_id, secret_hash = new_token()
        async with self.pool.transaction() as conn:
            row = await create_in(conn, token_id, secret_hash, name, role, ttl_seconds, actor)
            await audit.record(conn, actor, action, target=name, allowed=True,
                               detail={"role": str(role), "token_id": token_id,
                                       "ttl_seconds": ttl_seconds})
        return row, token

    async def get(self, token_id: str) -> Row | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(query("get_api_token"), {"id": token_id})
            return await cur.fetchone()

    async def get_cached(self, token_id: str) -> Row | None:
        """The token's row, read at most CACHE_SECONDS ago (a revocation drops it at once
        through `forget`); an unknown id is looked up every time."""
        now = time.monotonic()
        hit = self._cache.get(token_id)
        if hit is not None and now - hit[1] < CACHE_SECONDS:
            return hit[0]
        row = await self.get(token_id)
        if row is None:
            self._cache.pop(token_id, None)
            return None
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[token_id] = (row, now)
        return row

    def forget(self, token_id: str | None = None) -> None:
        """Drop the cached row of `token_id` (a revocation), or every row (None)."""
        if token_id is None:
            self._cache.clear()
        else:
            self._cache.pop(token_id, None)

    async def touch(self, token_id: str) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(query("touch_api_token"), {"id": token_id})

    async def revoke(self, name: str, actor: str, action: str) -> Row:
        async with self.pool.transaction() as conn:
            cur = await conn.execute(query("revoke_api_token"), {"name": name})
            row = await cur.fetchone()
            if row is None:
                raise NotFound(f"no live API token named '{name[:64]}'")
            self.forget(row["id"])
            await audit.record(conn, actor, action, target=name, allowed=True,
                               detail={"role": row["role"], "token_id": row["id"]})
        return row

    async def list(self, include_revoked: bool) -> list[Row]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(query("list_api_tokens"), {"all": include_revoked})
            return list(await cur.fetchall())


async def create_in(
    conn: Conn, token_id: str, secret_hash: bytes, name: str, role: Role, ttl_seconds: float,
    actor: str,
) -> Row:
    cur = await conn.execute(query("insert_api_token"), {
        "id": token_id, "name": name, "role": str(role), "secret_hash": secret_hash,
        "created_by": actor, "ttl": ttl_seconds,
    })
    row = await cur.fetchone()
    if row is None:
        raise Conflict(f"a live API token named '{name}' exists; revoke it first or pick "
                       "another name")
    return row


def expiry_text(row: Row) -> str:
    expires: dt.datetime | None = row["expires_at"]
    return f"{expires:%Y-%m-%d %H:%M %Z}" if expires else "never"
