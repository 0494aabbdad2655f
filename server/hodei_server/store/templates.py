"""Job templates in PostgreSQL: their versions, their runs and the history of those runs."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection

from hodei_api.v1 import jobs_pb2
from hodei_server.errors import Conflict, NotFound
from hodei_server.store.db import Pool
from hodei_server.store.flows import FlowStore, RunOrigin
from hodei_server.store.jobs import Row
from hodei_server.store.sqlfiles import query

_FINAL = ("SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT")


@dataclass(frozen=True, slots=True)
class ScheduleSettings:
    """A template's schedule as its latest version says, with its first tick computed."""

    cron: str
    timezone: str
    starting_deadline_seconds: float | None
    concurrency: str
    now: dt.datetime
    next_run_at: dt.datetime


@dataclass(frozen=True, slots=True)
class TemplateVersion:
    """What a version of a template holds that the store looks at."""

    name: str
    spec: bytes
    keep_succeeded: int | None
    keep_failed: int | None
    schedule: ScheduleSettings | None


# Builds a run's job from the template's row (with the version's spec): (spec, parameters).
RunBuilder = Callable[[Row], tuple[jobs_pb2.JobSpec, dict[str, str]]]


class TemplateStore:
    """Every template-related read and write."""

    def __init__(self, pool: Pool, flows: FlowStore) -> None:
        self.pool = pool
        self.flows = flows

    async def create(self, version: TemplateVersion, actor: str) -> Row:
        async with self.pool.transaction() as conn:
            cur = await conn.execute(query("insert_template"), {
                "id": uuid.uuid4(), "name": version.name, "spec": version.spec,
                "keep_succeeded": version.keep_succeeded, "keep_failed": version.keep_failed,
                "actor": actor})
            row = await cur.fetchone()
            if row is None:
                raise Conflict(f"template {version.name!r} exists already; change it with "
                               "UpdateTemplate (hodeictl template update)")
            await self._set_schedule(conn, row["id"], version.schedule)
        return row

    async def update(self, version: TemplateVersion, actor: str) -> Row:
        async with self.pool.transaction() as conn:
            cur = await conn.execute(query("update_template"), {
                "name": version.name, "spec": version.spec,
                "keep_succeeded": version.keep_succeeded, "keep_failed": version.keep_failed,
                "actor": actor})
            row = await cur.fetchone()
            if row is None:
                raise NotFound(f"template {version.name!r} not found")
            await self._set_schedule(conn, row["id"], version.schedule)
        return row

    @staticmethod
    async def _set_schedule(
        conn: AsyncConnection[Any], template_id: uuid.UUID, schedule: ScheduleSettings | None,
    ) -> None:
        if schedule is None:
            await conn.execute(query("delete_schedule"), {"template_id": template_id})
            return
        await conn.execute(query("upsert_schedule"), {
            "template_id": template_id, "cron": schedule.cron, "timezone": schedule.timezone,
            "deadline": schedule.starting_deadline_seconds,
            "concurrency": schedule.concurrency, "now": schedule.now,
            "next_run_at": schedule.next_run_at})

    async def get(self, name: str, version: int | None = None) -> Row:
        """The template with the spec of `version` (the latest if None)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(query("get_template"), {"name": name, "version": version})
            row = await cur.fetchone()
        if row is None:
            raise NotFound(f"template {name!r} not found")
        if row["spec"] is None:
            raise NotFound(f"template {name!r} has no version {version} (its latest is "
                           f"{row['version']})")
        return row

    async def list_templates(self) -> list[Row]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(query("list_templates"))
            return await cur.fetchall()

    async def set_disabled(self, name: str, disabled: bool, actor: str) -> Row:
        async with self.pool.connection() as conn:
            cur = await conn.execute(query("set_template_disabled"),
                                     {"name": name, "disabled": disabled, "actor": actor})
            row = await cur.fetchone()
        if row is None:
            raise NotFound(f"template {name!r} not found")
        return row

    async def delete(self, name: str, actor: str) -> None:
        """Delete a template with no run going on (Conflict naming them otherwise)."""
        async with self.pool.transaction() as conn:
            cur = await conn.execute(query("delete_template"), {"name": name, "actor": actor})
            if await cur.fetchone() is not None:
                return
            cur = await conn.execute(query("get_template"), {"name": name, "version": None})
            if await cur.fetchone() is None:
                raise NotFound(f"template {name!r} not found")
            cur = await conn.execute(query("active_runs_of_template"), {"name": name})
            active = [f"{r['id']} ({r['state']})" for r in await cur.fetchall()]
        raise Conflict(f"template {name!r} has runs that have not ended: "
                       f"{', '.join(active)}; cancel them or wait, then delete it")

    async def run(
        self, name: str, version: int | None, build: RunBuilder, idempotency_key: str,
        actor: str, submitted_by: str,
    ) -> tuple[Row, bool]:
        """A run of the template: the job `build` makes from it, recorded as its run."""
        async with self.pool.transaction() as conn:
            cur = await conn.execute(query("lock_template"), {"name": name, "version": version})
            template = await cur.fetchone()
            if template is None:
                await self.get(name, version)  # NotFound saying which
                raise NotFound(f"template {name!r} not found")
            if template["disabled"]:
                raise Conflict(f"template {name!r} is disabled; enable it to run it "
                               "(hodeictl template enable)")
            spec, parameters = build(template)
            origin = RunOrigin(template["id"], template["name"], template["spec_version"],
                               parameters)
            return await self.flows.submit_in(conn, spec, idempotency_key, actor,
                                              submitted_by, origin)

    async def stats(self, template_id: uuid.UUID) -> Row:
        async with self.pool.connection() as conn:
            cur = await conn.execute(query("template_stats"), {"template_id": template_id})
            row = await cur.fetchone()
        assert row is not None  # an aggregate always has its row
        return row

    async def recent_runs(self, template_id: uuid.UUID, limit: int) -> list[Row]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(query("recent_template_runs"),
                                     {"template_id": template_id, "limit": limit})
            return await cur.fetchall()
