"""Cron ticks: the reconciler leader starts each schedule's due runs.

Each pass reads the time from a `Clock` (the database's in production, so that every
replica agrees; tests hand in their own), finds the schedules with a tick due, and decides
each one's due ticks in a transaction of its own (`ScheduleStore.locked`): the latest may
start, within its starting deadline and as the concurrency policy allows; the others are
missed, counted and reported. See `hodei_server.store.schedules` for why a tick is decided
once whatever the leader does.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from typing import Any, Protocol

import psycopg
from psycopg import AsyncConnection

from hodei_api.v1 import templates_pb2
from hodei_server import cron, templating
from hodei_server.dispatch.registry import AgentRegistry
from hodei_server.errors import HodeiError
from hodei_server.store.flows import FlowStore, RunOrigin
from hodei_server.store.jobs import JobStore, Row
from hodei_server.store.schedules import ScheduleStore, Tick
from hodei_server.store.signals import CancelAttempt

log = logging.getLogger(__name__)


class Clock(Protocol):
    """Where schedules read the time."""

    async def now(self) -> dt.datetime: ...


class _AlreadyDecided(Exception):
    """Another replica decided these ticks first: roll this decision back."""


class CronTicker:
    """Decides the due ticks of every schedule, once per tick."""

    def __init__(
        self, schedules: ScheduleStore, flows: FlowStore, jobs: JobStore,
        registry: AgentRegistry, server_id: str, clock: Clock,
    ) -> None:
        self.schedules = schedules
        self.flows = flows
        self.jobs = jobs
        self.registry = registry
        self.server_id = server_id
        self.decided_by = f"server:{server_id}"
        self.clock = clock

    async def tick(self) -> int:
        """Decide every due tick; how many runs were started."""
        now = await self.clock.now()
        started = 0
        for template_id in await self.schedules.due(now):
            try:
                started += await self._decide(template_id, now)
            except (psycopg.Error, OSError):
                raise  # the reconciler reconnects
            except _AlreadyDecided:
                log.info("schedule of template %s: ticks decided by another replica",
                         template_id)
            except Exception:
                log.exception("schedule of template %s: deciding its ticks failed",
                              template_id)
        return started

    async def _decide(self, template_id: uuid.UUID, now: dt.datetime) -> int:
        signals: list[CancelAttempt] = []
        async with self.schedules.locked(template_id) as (conn, row):
            if row is None or row["suspended"] or row["disabled"]:
                return 0
            schedule = cron.parse(row["cron"], row["timezone"], row["name"])
            # Counting the ticks of a long outage takes a while: off the event loop.
            plan = await asyncio.to_thread(cron.plan, schedule, row["cursor_at"], now,
                                           row["starting_deadline_seconds"])
            ticks = [Tick(at, "missed", reason=reason) for at, reason in plan.missed]
            if plan.latest is not None and plan.start:
                ticks.append(await self._start(conn, row, plan.latest, signals))
            ticks.sort(key=lambda t: t.at)
            if not await self.schedules.record(conn, row, ticks, plan.missed_count,
                                               plan.next_run, self.decided_by):
                raise _AlreadyDecided()
        for signal in signals:
            self.registry.deliver(signal)
        self._report(row["name"], ticks, plan.missed_count)
        return sum(t.outcome == "started" for t in ticks)

    async def _start(
        self, conn: AsyncConnection[Any], row: Row, at: dt.datetime,
        signals: list[CancelAttempt],
    ) -> Tick:
        """The tick at `at` starts a run, unless the concurrency policy skips it."""
        active = await self.schedules.active_runs(conn, row["template_id"])
        if active and row["concurrency"] == "forbid":
            return Tick(at, "skipped", reason=f"concurrency forbid: the run {active[0]['id']} "
                                              f"has not ended ({active[0]['state']})")
        actor = f"schedule:{row['name']}"
        if row["concurrency"] == "replace":
            for run in active:
                _, cancelled = await self.jobs.cancel_in(
                    conn, run["id"], f"replaced by the run of the tick at {at.isoformat()}",
                    actor, self.server_id)
                signals.extend(cancelled)
        spec = templates_pb2.TemplateSpec.FromString(row["spec"])
        try:
            async with conn.transaction():  # a savepoint: a refused run is a missed tick
                values = templating.resolve_parameters(spec, {})
                job = templating.run_spec(spec, values)
                origin = RunOrigin(row["template_id"], row["name"], row["version"], values, at)
                job_row, _ = await self.flows.submit_in(conn, job, "", actor, actor, origin)
        except HodeiError as exc:
            return Tick(at, "missed", reason=f"its run could not be made: {exc.message}")
        return Tick(at, "started", job_row["id"])

    @staticmethod
    def _report(name: str, ticks: list[Tick], missed_count: int) -> None:
        for tick in ticks:
            if tick.outcome == "started":
                log.info("schedule %s: tick %s started job %s", name, tick.at.isoformat(),
                         tick.job_id)
            elif tick.outcome == "skipped":
                log.info("schedule %s: tick %s skipped: %s", name, tick.at.isoformat(),
                         tick.reason)
        missed = [t for t in ticks if t.outcome == "missed"]
        if missed:
            log.warning("schedule %s: %d ticks missed, the last at %s: %s", name,
                        missed_count, missed[-1].at.isoformat(), missed[-1].reason)
