"""The server's checks of templates and their parameters, and cron plans."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from hodei_server import cron, templating
from hodeictl import templatefile

EXAMPLES = sorted((Path(__file__).parents[2] / "examples" / "templates").glob("*.toml"))
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_the_example_templates_pass_the_servers_checks(path: Path) -> None:
    spec = templatefile.load(path)
    templating.validate_template(spec)
    version = templating.template_version(spec, NOW)
    if spec.schedule.cron:
        assert version.schedule is not None and version.schedule.next_run_at > NOW


def test_a_plan_starts_only_the_latest_tick_and_counts_the_others() -> None:
    every_minute = cron.parse("* * * * *", "", "x")
    plan = cron.plan(every_minute, NOW, NOW + dt.timedelta(minutes=3, seconds=5), None)
    assert (plan.latest, plan.start, plan.missed_count) == (
        NOW + dt.timedelta(minutes=3), True, 2)
    late = cron.plan(every_minute, NOW, NOW + dt.timedelta(minutes=3, seconds=5), 4.0)
    assert (late.start, late.missed_count, late.missed[-1][1]) == (
        False, 3, "5s late, past its starting deadline of 4s")
    none = cron.plan(every_minute, NOW, NOW + dt.timedelta(seconds=59), None)
    assert (none.latest, none.missed_count, none.next_run) == (
        None, 0, NOW + dt.timedelta(minutes=1))


def test_an_outage_longer_than_the_count_still_starts_its_latest_tick() -> None:
    every_second = cron.parse("* * * * * *", "", "x")
    end = NOW + dt.timedelta(seconds=cron.MAX_COUNTED + 500)
    plan = cron.plan(every_second, NOW, end, None)
    assert plan.latest == end and plan.start
    assert plan.missed_count == cron.MAX_COUNTED
    assert len(plan.missed) == cron.MAX_RECORDED + 1


def test_hashed_fields_differ_by_name_and_stay_put() -> None:
    a = cron.parse("H H * * *", "", "alpha").next_after(NOW)
    b = cron.parse("H H * * *", "", "beta").next_after(NOW)
    assert a != b
    assert cron.parse("H H * * *", "", "alpha").next_after(NOW) == a
