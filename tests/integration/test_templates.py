"""Templates and cron schedules against a real PostgreSQL, with a clock the test moves.

The ticker is the server's own (`CronTicker`), handed a `ManualClock` instead of the
database's: the clock is the only thing replaced.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
import pytest

from hodei_api.v1 import jobs_pb2, templates_pb2
from hodei_server import templating
from hodei_server.dispatch.registry import AgentRegistry
from hodei_server.dispatch.ticker import CronTicker
from hodei_server.errors import Conflict, InvalidSpec
from hodei_server.store import db
from hodei_server.store.flows import FlowStore
from hodei_server.store.jobs import JobStore
from hodei_server.store.schedules import ScheduleStore
from hodei_server.store.states import JobState
from hodei_server.store.templates import TemplateStore
from hodei_server.store.workers import WorkerStore
from tests.integration.test_store import ANY, first_fit, new_worker

T = TypeVar("T")
T0 = dt.datetime(2026, 1, 1, 0, 0, 30, tzinfo=dt.UTC)


def at(minute: int, second: float = 0.0) -> dt.datetime:
    return dt.datetime(2026, 1, 1, 0, 0, tzinfo=dt.UTC) + dt.timedelta(minutes=minute,
                                                                       seconds=second)


class ManualClock:
    """The time is what the test says."""

    def __init__(self, now: dt.datetime) -> None:
        self.time = now

    async def now(self) -> dt.datetime:
        return self.time


class World:
    def __init__(self, pool: db.Pool, clock: ManualClock) -> None:
        self.pool = pool
        self.clock = clock
        self.jobs = JobStore(pool)
        self.flows = FlowStore(pool, self.jobs)
        self.templates = TemplateStore(pool, self.flows)
        self.schedules = ScheduleStore(pool)
        self.ticker = self.new_ticker(pool)

    def new_ticker(self, pool: db.Pool, server_id: str = "a") -> CronTicker:
        jobs = JobStore(pool)
        return CronTicker(ScheduleStore(pool), FlowStore(pool, jobs), jobs, AgentRegistry(),
                          server_id, self.clock)

    async def create(self, spec: templates_pb2.TemplateSpec) -> None:
        templating.validate_template(spec)
        await self.templates.create(templating.template_version(spec, self.clock.time), "t")

    async def tick(self, moment: dt.datetime) -> int:
        self.clock.time = moment
        return await self.ticker.tick()

    async def runs(self, name: str) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id, state, scheduled_at, reason, template_version, parameters"
                " FROM jobs WHERE template_name = %s ORDER BY scheduled_at, created_at", (name,))
            return await cur.fetchall()

    async def ticks(self, name: str) -> list[tuple[dt.datetime, str]]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT k.scheduled_at, k.outcome FROM schedule_ticks k"
                " JOIN job_templates t ON t.id = k.template_id WHERE t.name = %s"
                " ORDER BY k.scheduled_at", (name,))
            return [(r["scheduled_at"], r["outcome"]) for r in await cur.fetchall()]


def run(database_url: str, body: Callable[[World], Awaitable[T]]) -> T:
    async def main() -> T:
        pool = await db.open_pool(database_url, min_size=1, max_size=8)
        try:
            return await body(World(pool, ManualClock(T0)))
        finally:
            await pool.close()

    return asyncio.run(main())


def template(name: str = "nightly", cron: str = "* * * * *", **schedule: Any,
             ) -> templates_pb2.TemplateSpec:
    spec = templates_pb2.TemplateSpec(
        name=name, job=jobs_pb2.JobSpec(command=["echo", "hi"]),
        schedule=templates_pb2.Schedule(cron=cron, **schedule))
    return spec


def test_one_run_per_tick_at_the_tick(database_url: str) -> None:
    async def body(w: World) -> None:
        await w.create(template())
        assert await w.tick(at(0, 59.9)) == 0
        assert await w.tick(at(1, 0.2)) == 1
        assert await w.tick(at(1, 30)) == 0
        assert await w.tick(at(2, 0.1)) == 1
        runs = await w.runs("nightly")
        assert [r["scheduled_at"] for r in runs] == [at(1), at(2)]
        assert await w.ticks("nightly") == [(at(1), "started"), (at(2), "started")]
        status = await w.schedules.get("nightly")
        assert (status["started"], status["missed"], status["next_run_at"]) == (2, 0, at(3))

    run(database_url, body)


def test_two_replicas_ticking_together_start_one_run_per_tick(database_url: str) -> None:
    async def body(w: World) -> None:
        await w.create(template("busy", "* * * * * *"))  # every second
        other_pool = await db.open_pool(w.pool.conninfo, min_size=1, max_size=4)
        try:
            tickers = [w.ticker, w.new_ticker(other_pool, "b")]
            for second in range(1, 61):
                w.clock.time = T0 + dt.timedelta(seconds=second)
                await asyncio.gather(*(t.tick() for t in tickers))
        finally:
            await other_pool.close()
        runs = await w.runs("busy")
        ticks = await w.ticks("busy")
        scheduled = [r["scheduled_at"] for r in runs]
        assert len(scheduled) == len(set(scheduled)) == 60
        assert [t for t, outcome in ticks if outcome == "started"] == scheduled
        print(f"FIGURE: two tickers, 60 ticks: runs 60, duplicate runs "
              f"{len(scheduled) - len(set(scheduled))}, ticks without a decision "
              f"{60 - len(ticks)}")

    run(database_url, body)


@pytest.mark.parametrize(
    ("deadline", "started", "missed", "reason"),
    [
        (None, [at(10)], 9, "superseded by the tick at 2026-01-01 00:10:00 UTC"),
        (60.0, [at(10)], 9, "superseded by the tick at 2026-01-01 00:10:00 UTC"),
        (10.0, [], 10, "30s late, past its starting deadline of 10s"),
    ],
)
def test_ticks_missed_while_down_are_counted_and_the_deadline_decides(
    database_url: str, deadline: float | None, started: list[dt.datetime], missed: int,
    reason: str,
) -> None:
    async def body(w: World) -> None:
        schedule: dict[str, Any] = {}
        if deadline is not None:
            schedule["starting_deadline_seconds"] = deadline
        await w.create(template(**schedule))
        # Down from before 00:01 until 00:10:30.
        await w.tick(at(10, 30))
        assert [r["scheduled_at"] for r in await w.runs("nightly")] == started
        ticks = await w.ticks("nightly")
        assert [t for t, outcome in ticks if outcome == "missed"] == \
            [at(m) for m in range(1, 10 if started else 11)]
        status = await w.schedules.get("nightly")
        assert (status["missed"], status["last_missed_reason"]) == (missed, reason)
        assert status["next_run_at"] == at(11)
        print(f"FIGURE: down 00:01-00:10:30, starting_deadline {deadline}: "
              f"started {len(started)}, missed {status['missed']}")

    run(database_url, body)


def test_concurrency_forbid_skips_while_a_run_is_active(database_url: str) -> None:
    async def body(w: World) -> None:
        await w.create(template(concurrency=templates_pb2.CONCURRENCY_POLICY_FORBID))
        await w.tick(at(1))
        await w.tick(at(2))
        [first] = await w.runs("nightly")
        await w.jobs.cancel(first["id"], "done with it", "t")
        await w.tick(at(3))
        assert [r["scheduled_at"] for r in await w.runs("nightly")] == [at(1), at(3)]
        assert await w.ticks("nightly") == [(at(1), "started"), (at(2), "skipped"),
                                            (at(3), "started")]
        assert (await w.schedules.get("nightly"))["skipped"] == 1

    run(database_url, body)


def test_concurrency_replace_cancels_the_active_run(database_url: str) -> None:
    async def body(w: World) -> None:
        await w.create(template(concurrency=templates_pb2.CONCURRENCY_POLICY_REPLACE))
        await w.tick(at(1))
        await w.tick(at(2))
        first, second = await w.runs("nightly")
        assert first["state"] == "CANCELLED"
        assert first["reason"].startswith("replaced by the run of the tick at 2026-01-01T00:02")
        assert second["state"] == "PENDING"

    run(database_url, body)


def test_concurrency_allow_runs_side_by_side(database_url: str) -> None:
    async def body(w: World) -> None:
        await w.create(template(concurrency=templates_pb2.CONCURRENCY_POLICY_ALLOW))
        for minute in (1, 2, 3):
            await w.tick(at(minute))
        assert [r["state"] for r in await w.runs("nightly")] == ["PENDING"] * 3

    run(database_url, body)


def test_a_suspended_schedule_starts_nothing_and_resumes_with_its_latest_tick(
    database_url: str,
) -> None:
    async def body(w: World) -> None:
        await w.create(template())
        await w.schedules.set_suspended("nightly", True, "t")
        assert await w.tick(at(5, 1)) == 0
        assert await w.ticks("nightly") == []
        await w.schedules.set_suspended("nightly", False, "t")
        assert await w.tick(at(5, 2)) == 1
        assert [r["scheduled_at"] for r in await w.runs("nightly")] == [at(5)]
        assert (await w.schedules.get("nightly"))["missed"] == 4
        # A disabled template is as good as suspended.
        await w.templates.set_disabled("nightly", True, "t")
        assert await w.tick(at(7, 1)) == 0

    run(database_url, body)


def test_time_zones_and_hashed_fields(database_url: str) -> None:
    async def body(w: World) -> None:
        w.clock.time = dt.datetime(2026, 3, 27, 12, tzinfo=dt.UTC)
        await w.create(template("madrid", "H 3 * * *", timezone="Europe/Madrid"))
        await w.create(template("other", "H 3 * * *", timezone="Europe/Madrid"))
        madrid = (await w.schedules.get("madrid"))["next_run_at"]
        other = (await w.schedules.get("other"))["next_run_at"]
        local = madrid.astimezone(dt.timezone(dt.timedelta(hours=1)))
        assert (local.hour, local.date()) == (3, dt.date(2026, 3, 28))
        assert madrid != other  # H spreads them by name
        # Across the change to summer time, 03:MM in Madrid is 01:MM UTC.
        await w.tick(madrid + dt.timedelta(seconds=1))
        after_dst = (await w.schedules.get("madrid"))["next_run_at"]
        assert (after_dst - madrid) == dt.timedelta(hours=23)

    run(database_url, body)


def test_runs_record_template_version_and_parameters_and_refuse_bad_ones(
    database_url: str,
) -> None:
    async def body(w: World) -> None:
        spec = templates_pb2.TemplateSpec(
            name="report", job=jobs_pb2.JobSpec(script="echo $day $count"),
            parameters=[
                templates_pb2.TemplateParameter(name="day", required=True),
                templates_pb2.TemplateParameter(
                    name="count", type=templates_pb2.PARAMETER_TYPE_INTEGER, default="3"),
                templates_pb2.TemplateParameter(
                    name="dry", type=templates_pb2.PARAMETER_TYPE_BOOLEAN, default="false"),
            ])
        await w.create(spec)

        async def run_it(**given: str) -> dict[str, Any]:
            def build(row: dict[str, Any]) -> tuple[jobs_pb2.JobSpec, dict[str, str]]:
                current = templates_pb2.TemplateSpec.FromString(row["spec"])
                values = templating.resolve_parameters(current, given)
                return templating.run_spec(current, values), values

            row, _ = await w.templates.run("report", None, build, "", "t", "tester")
            return row

        for given, message in [
            ({}, "parameter 'day' is required by template 'report': give it with --param "
                 "day=VALUE"),
            ({"day": "x", "nope": "1"}, "parameter 'nope' is not a parameter of template "
                                        "'report' (it takes: count, day, dry)"),
            ({"day": "x", "count": "three"}, "parameter 'count': value 'three' is not an "
                                             "integer"),
            ({"day": "x", "dry": "perhaps"}, "parameter 'dry': value 'perhaps' is not true "
                                             "or false"),
        ]:
            with pytest.raises(InvalidSpec) as refused:
                await run_it(**given)
            assert refused.value.message == message
        first = await run_it(day="2026-01-01", dry="YES")
        assert (first["template_name"], first["template_version"]) == ("report", 1)
        assert first["parameters"] == {"day": "2026-01-01", "count": "3", "dry": "true"}
        assert jobs_pb2.JobSpec.FromString(first["spec"]).env["day"] == "2026-01-01"
        spec.description = "v2"
        await w.templates.update(templating.template_version(spec, w.clock.time), "t")
        second = await run_it(day="2026-01-02")
        assert second["template_version"] == 2
        old = await w.templates.get("report", 1)
        assert templates_pb2.TemplateSpec.FromString(old["spec"]).description == ""
        # Deleting it is refused while its runs have not ended.
        with pytest.raises(Conflict, match="has runs that have not ended"):
            await w.templates.delete("report", "t")

    run(database_url, body)


def test_history_limits_keep_the_newest_runs_and_the_stats_keep_them_all(
    database_url: str,
) -> None:
    async def body(w: World) -> None:
        spec = templates_pb2.TemplateSpec(
            name="limited", job=jobs_pb2.JobSpec(command=["true"]),
            history=templates_pb2.HistoryLimits(succeeded=1, failed=1))
        await w.create(spec)
        worker = await new_worker(WorkerStore(w.pool, w.jobs), slots=16)

        def build(row: dict[str, Any]) -> tuple[jobs_pb2.JobSpec, dict[str, str]]:
            current = templates_pb2.TemplateSpec.FromString(row["spec"])
            return templating.run_spec(current, {}), {}

        outcomes = [JobState.SUCCEEDED, JobState.FAILED, JobState.SUCCEEDED,
                    JobState.SUCCEEDED, JobState.FAILED]
        ids = []
        for outcome in outcomes:
            row, _ = await w.templates.run("limited", None, build, "", "t", "tester")
            ids.append(row["id"])
            [_] = await w.jobs.claim_and_assign(ANY, 1, first_fit(worker), "t")
            async with w.pool.connection() as conn:
                await w.jobs.mark_running(conn, row["id"], 1, worker, 1)
                await w.jobs.finish(conn, row["id"], 1, worker, outcome,
                                    0 if outcome is JobState.SUCCEEDED else 1, "", "t")
            await w.flows.advance("leader", "a")
        async with w.pool.connection() as conn:
            cur = await conn.execute("SELECT id FROM jobs WHERE template_name = 'limited'")
            kept = {r["id"] for r in await cur.fetchall()}
        assert kept == {ids[3], ids[4]}
        template_row = await w.templates.get("limited")
        stats = await w.templates.stats(template_row["id"])
        assert (stats["runs"], stats["succeeded"], stats["failed"], stats["active"]) == \
            (5, 3, 2, 0)
        assert stats["last_state"] == "FAILED" and stats["last_job_id"] == ids[4]
        assert stats["p50"] is not None and stats["p95"] >= stats["p50"]
        recent = await w.templates.recent_runs(template_row["id"], 10)
        assert [r["job_id"] for r in recent] == list(reversed(ids))
        await w.templates.delete("limited", "t")

    run(database_url, body)
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM template_runs").fetchone()
        assert row is not None and row[0] == 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "bad name"}, "template name 'bad name' must be"),
        ({"schedule": templates_pb2.Schedule(cron="61 * * * *")},
         "schedule: cron expression '61 * * * *' is not valid"),
        ({"schedule": templates_pb2.Schedule(cron="* * * * *", timezone="Mars/Olympus")},
         "schedule: timezone 'Mars/Olympus' is not a known time zone"),
        ({"schedule": templates_pb2.Schedule(timezone="UTC")},
         "timezone, starting_deadline and concurrency need a schedule"),
        ({"parameters": [templates_pb2.TemplateParameter(name="HODEI_X")]},
         "parameter 'HODEI_X': a name is"),
        ({"parameters": [templates_pb2.TemplateParameter(
            name="n", type=templates_pb2.PARAMETER_TYPE_NUMBER, default="fast")]},
         "parameter 'n': its default 'fast' is not a number"),
        ({"parameters": [templates_pb2.TemplateParameter(name="day", required=True)],
          "schedule": templates_pb2.Schedule(cron="0 3 * * *")},
         "parameter 'day' is required and has no default, so the schedule's runs"),
        ({"history": templates_pb2.HistoryLimits(succeeded=-1)},
         "history.succeeded must be between 0 and"),
    ],
)
def test_bad_templates_are_refused_in_one_line(change: dict[str, Any], message: str) -> None:
    spec = templates_pb2.TemplateSpec(name="ok", job=jobs_pb2.JobSpec(command=["true"]))
    for field, value in change.items():
        if isinstance(value, list):
            getattr(spec, field).extend(value)
        elif isinstance(value, str):
            setattr(spec, field, value)
        else:
            getattr(spec, field).CopyFrom(value)
    with pytest.raises(InvalidSpec) as refused:
        templating.validate_template(spec)
    assert refused.value.message.startswith(message), refused.value.message
    assert "\n" not in refused.value.message
