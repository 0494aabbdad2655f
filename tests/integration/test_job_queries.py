"""Listing jobs by id prefix, name glob, labels and age, against a real PostgreSQL."""

from __future__ import annotations

import datetime as dt

from hodei_server.store.jobs import JobStore
from hodei_server.store.workers import WorkerStore
from tests.integration.test_store import run, spec


def test_list_filters_by_id_prefix_name_labels_and_age(database_url: str) -> None:
    async def body(jobs: JobStore, _: WorkerStore) -> None:
        build, _ = await jobs.submit(spec(name="build-linux", labels={"team": "infra"}), "", "t")
        other, _ = await jobs.submit(spec(name="build-mac", labels={"team": "apps"}), "", "t")
        odd, _ = await jobs.submit(spec(name="50%_done\\x"), "", "t")
        prefix = str(build["id"])[:8]
        rows, _ = await jobs.list_jobs([], 10, "", id_prefix=prefix)
        assert [r["id"] for r in rows] == [build["id"]]
        rows, _ = await jobs.list_jobs([], 10, "", name="build-*")
        assert {r["id"] for r in rows} == {build["id"], other["id"]}
        rows, _ = await jobs.list_jobs([], 10, "", name="build-mac")
        assert [r["id"] for r in rows] == [other["id"]]
        rows, _ = await jobs.list_jobs([], 10, "", name="build-?ac")
        assert [r["id"] for r in rows] == [other["id"]]
        # LIKE's own % _ \ in a name are themselves, not wildcards.
        rows, _ = await jobs.list_jobs([], 10, "", name="50%_done\\x")
        assert [r["id"] for r in rows] == [odd["id"]]
        rows, _ = await jobs.list_jobs([], 10, "", name="5__%")
        assert rows == []
        rows, _ = await jobs.list_jobs([], 10, "", labels={"team": "infra"})
        assert [r["id"] for r in rows] == [build["id"]]
        rows, _ = await jobs.list_jobs([], 10, "", labels={"team": "infra", "x": "y"})
        assert rows == []
        future = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
        rows, _ = await jobs.list_jobs([], 10, "", created_after=future)
        assert rows == []
        past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
        rows, _ = await jobs.list_jobs([], 10, "", created_after=past, name="build-*")
        assert len(rows) == 2

    run(database_url, body)
