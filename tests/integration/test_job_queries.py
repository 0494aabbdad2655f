"""Listing jobs by id prefix, name glob, labels and age, against a real PostgreSQL."""

from __future__ import annotations

import datetime as dt
from typing import Any

from hodei_server.store.events import EventStore, JobFilter
from hodei_server.store.jobs import JobStore
from hodei_server.store.workers import WorkerStore
from tests.integration.test_store import run, spec


def test_list_filters_by_id_prefix_name_labels_and_age(database_url: str) -> None:
    async def body(jobs: JobStore, _: WorkerStore) -> None:
        events = EventStore(jobs.pool)

        async def listed(**wanted: Any) -> list[dict[str, Any]]:
            """The jobs ListJobs pages through; a watcher's test on each row agrees."""
            job_filter = JobFilter(**wanted)
            rows = await events.job_page(job_filter, None, 10)
            everything = await events.job_page(JobFilter(), None, 10)
            assert [r["id"] for r in everything if job_filter.matches(r)] == [
                r["id"] for r in rows]
            return rows

        build, _ = await jobs.submit(spec(name="build-linux", labels={"team": "infra"}), "", "t")
        other, _ = await jobs.submit(spec(name="build-mac", labels={"team": "apps"}), "", "t")
        odd, _ = await jobs.submit(spec(name="50%_done\\x"), "", "t")
        prefix = str(build["id"])[:8]
        rows = await listed(id_prefix=prefix)
        assert [r["id"] for r in rows] == [build["id"]]
        rows = await listed(name_glob="build-*")
        assert {r["id"] for r in rows} == {build["id"], other["id"]}
        rows = await listed(name_glob="build-mac")
        assert [r["id"] for r in rows] == [other["id"]]
        rows = await listed(name_glob="build-?ac")
        assert [r["id"] for r in rows] == [other["id"]]
        # LIKE's own % _ \ in a name are themselves, not wildcards.
        rows = await listed(name_glob="50%_done\\x")
        assert [r["id"] for r in rows] == [odd["id"]]
        rows = await listed(name_glob="5__%")
        assert rows == []
        rows = await listed(labels={"team": "infra"})
        assert [r["id"] for r in rows] == [build["id"]]
        rows = await listed(labels={"team": "infra", "x": "y"})
        assert rows == []
        future = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
        rows = await listed(created_after=future)
        assert rows == []
        past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
        rows = await listed(created_after=past, name_glob="build-*")
        assert len(rows) == 2

    run(database_url, body)
