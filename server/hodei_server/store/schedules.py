"""Schedules in PostgreSQL: listing and suspending them, and recording each tick's decision.

A tick is decided once, whatever the number of replicas and however often the leader
changes: the schedule's row is locked while its due ticks are decided, the decision is
stored under the unique key (template, tick) in `schedule_ticks`, and the schedule's
cursor moves only from the value read under the lock, all in one transaction with the
run it starts. A leader that dies mid-tick has its transaction rolled back; the next
leader decides the same tick again, from scratch.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from hodei_server.errors import NotFound
from hodei_server.store.db import Pool
from hodei_server.store.jobs import Row
from hodei_server.store.sqlfiles import query


@dataclass(frozen=True, slots=True)
class Tick:
    """One tick's decision: `outcome` is started, skipped or missed."""

    at: dt.datetime
    outcome: str
    job_id: uuid.UUID | None = None
    reason: str = ""


class ScheduleStore:
    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    async def now(self) -> dt.datetime:
        """The database's clock: one time for every replica."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(query("clock"))
            row = await cur.fetchone()
        assert row is not None
        now: dt.datetime = row["now"]
        return now

    async def get(self, name: str) -> Row:
        async with self.pool.connection() as conn:
            cur = await conn.execute(query("get_schedule"), {"name": name})
            row = await cur.fetchone()
        if row is None:
            raise NotFound(f"template {name!r} has no schedule (or does not exist)")
        return row

    async def list_schedules(self) -> list[Row]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(query("list_schedules"))
            return await cur.fetchall()

    async def set_suspended(self, name: str, suspended: bool, actor: str) -> Row:
        async with self.pool.connection() as conn:
            cur = await conn.execute(query("set_schedule_suspended"),
                                     {"name": name, "suspended": suspended, "actor": actor})
            if await cur.fetchone() is None:
                raise NotFound(f"template {name!r} has no schedule (or does not exist)")
        return await self.get(name)

    async def due(self, now: dt.datetime, limit: int = 100) -> list[uuid.UUID]:
        """Schedules with a tick due at `now`, soonest first."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(query("due_schedules"), {"now": now, "limit": limit})
            return [r["template_id"] for r in await cur.fetchall()]

    @contextlib.asynccontextmanager
    async def locked(
        self, template_id: uuid.UUID
    ) -> AsyncIterator[tuple[AsyncConnection[Any], Row | None]]:
        """A transaction holding the schedule's row (None: deleted meanwhile), with its
        template's name, state and latest spec."""
        async with self.pool.transaction() as conn:
            cur = await conn.execute(query("lock_schedule"), {"template_id": template_id})
            yield conn, await cur.fetchone()

    @staticmethod
    async def active_runs(conn: AsyncConnection[Any], template_id: uuid.UUID) -> list[Row]:
        cur = await conn.execute(query("active_scheduled_runs"), {"template_id": template_id})
        return await cur.fetchall()

    @staticmethod
    async def record(
        conn: AsyncConnection[Any], schedule: Row, ticks: Sequence[Tick], missed_total: int,
        next_run_at: dt.datetime, decided_by: str,
    ) -> bool:
        """Store the decisions and move the cursor to the last tick (with no tick, only
        the next run's time); False (and nothing stored by the caller must stay: roll back)
        if any tick was decided before."""
        cur = await conn.execute(query("insert_ticks"), {
            "template_id": schedule["template_id"], "decided_by": decided_by,
            "ats": [t.at for t in ticks], "outcomes": [t.outcome for t in ticks],
            "job_ids": [t.job_id for t in ticks], "reasons": [t.reason for t in ticks]})
        if len(await cur.fetchall()) != len(ticks):
            return False
        started = next((t for t in ticks if t.outcome == "started"), None)
        missed = [t for t in ticks if t.outcome == "missed"]
        cur = await conn.execute(query("advance_schedule"), {
            "template_id": schedule["template_id"], "expected_cursor": schedule["cursor_at"],
            "cursor_at": ticks[-1].at if ticks else schedule["cursor_at"],
            "next_run_at": next_run_at,
            "started": 1 if started else 0, "missed": missed_total,
            "skipped": sum(t.outcome == "skipped" for t in ticks),
            "job_id": started.job_id if started else None,
            "last_missed_at": missed[-1].at if missed else None,
            "last_missed_reason": missed[-1].reason if missed else ""})
        if await cur.fetchone() is None:
            return False
        for tick in ticks:
            if tick.outcome != "missed" or tick is missed[-1]:
                await conn.execute(query("schedule_event"), {
                    "type": f"schedule.{tick.outcome}", "name": schedule["name"],
                    "actor": decided_by, "payload": Jsonb({
                        "scheduled_at": tick.at.isoformat(), "reason": tick.reason,
                        "job_id": str(tick.job_id) if tick.job_id else None,
                        **({"missed": missed_total} if tick.outcome == "missed" else {})})})
        return True

    async def prune_ticks(self) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(query("prune_schedule_ticks"))
