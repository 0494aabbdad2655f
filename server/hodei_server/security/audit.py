"""The security audit trail: one row per decision worth answering for later.

Actors are "token:<name>", "worker:<id>", "operator" (someone with database access) or
"anonymous". Details must never carry a secret value: callers pass names and ids only.
"""

from __future__ import annotations

import logging
from typing import Any

from psycopg.types.json import Jsonb

from hodei_server.store.db import Conn, Pool
from hodei_server.store.sqlfiles import query

log = logging.getLogger(__name__)

# The actor of what someone with database access does (hodei-server token create).
OPERATOR = "operator"


async def record(
    conn: Conn,
    actor: str,
    action: str,
    *,
    target: str = "",
    allowed: bool,
    detail: dict[str, Any] | None = None,
) -> None:
    """Add one audit row inside the caller's transaction."""
    await conn.execute(query("insert_audit"), {
        "actor": actor, "action": action, "target": target, "allowed": allowed,
        "detail": Jsonb(detail or {}),
    })


async def record_now(
    pool: Pool,
    actor: str,
    action: str,
    *,
    target: str = "",
    allowed: bool,
    detail: dict[str, Any] | None = None,
) -> None:
    """Add one audit row in its own transaction; a failure is logged, never raised, so a
    refusal is still refused when the database is unavailable."""
    try:
        async with pool.connection() as conn:
            await record(conn, actor, action, target=target, allowed=allowed, detail=detail)
    except Exception as exc:  # the audit must not turn a refusal into a crash
        log.warning("could not record audit event %s by %s: %s", action, actor, exc)


async def entries(
    pool: Pool, *, action: str = "", after: int = 0, limit: int = 1000
) -> list[dict[str, Any]]:
    async with pool.connection() as conn:
        cur = await conn.execute(query("list_audit"),
                                 {"action": action, "after": after, "limit": limit})
        return list(await cur.fetchall())
