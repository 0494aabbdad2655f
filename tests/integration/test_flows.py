"""Dependencies, indexed jobs, failure policies and TTL against a real PostgreSQL.

Attempts end through the store's own fenced `finish`, as an agent's report would; the
leader's step (`FlowStore.advance`) then moves the jobs that follow them on.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
import pytest

from hodei_api.v1 import jobs_pb2
from hodei_server.errors import Conflict, InvalidSpec
from hodei_server.store import db
from hodei_server.store.flows import FlowStore
from hodei_server.store.jobs import JobStore
from hodei_server.store.states import JobState
from hodei_server.store.workers import WorkerStore
from tests.integration.test_store import ANY, first_fit, make_runnable, new_worker

T = TypeVar("T")
SUCCEEDED = jobs_pb2.DEPENDENCY_CONDITION_SUCCEEDED
FINISHED = jobs_pb2.DEPENDENCY_CONDITION_FINISHED
FAILED = jobs_pb2.DEPENDENCY_CONDITION_FAILED


class Flows:
    """The stores, a worker, and helpers to run and end jobs as an agent would."""

    def __init__(self, jobs: JobStore, flows: FlowStore, worker: uuid.UUID) -> None:
        self.jobs = jobs
        self.flows = flows
        self.worker = worker

    async def submit(self, **fields: Any) -> uuid.UUID:
        fields.setdefault("command", ["true"])
        row, _ = await self.flows.submit(jobs_pb2.JobSpec(**fields), "", "t", "tester")
        return uuid.UUID(str(row["id"]))

    async def state(self, job_id: uuid.UUID) -> JobState:
        return await self.jobs.state_of(job_id)

    async def reason(self, job_id: uuid.UUID) -> str:
        row, _ = await self.jobs.get(job_id)
        return str(row["reason"])

    async def claim(self, limit: int = 100) -> list[uuid.UUID]:
        assigned = await self.jobs.claim_and_assign(ANY, limit, first_fit(self.worker), "t")
        return [a.job_id for a in assigned]

    async def end(self, job_id: uuid.UUID, outcome: JobState, exit_code: int | None = 0,
                  ) -> JobState | None:
        row, _ = await self.jobs.get(job_id)
        async with self.jobs.pool.connection() as conn:
            return await self.jobs.finish(conn, job_id, row["attempt"], self.worker, outcome,
                                          exit_code, "", "t")

    async def advance(self) -> int:
        return (await self.flows.advance("leader", "replica")).steps

    async def indexes(self, parent: uuid.UUID) -> dict[int, tuple[uuid.UUID, JobState]]:
        async with self.jobs.pool.connection() as conn:
            cur = await conn.execute("SELECT id, job_index, state FROM jobs WHERE parent_id = %s",
                                     (parent,))
            return {r["job_index"]: (r["id"], JobState(r["state"]))
                    for r in await cur.fetchall()}


def run(database_url: str, body: Callable[[Flows], Awaitable[T]]) -> T:
    async def main() -> T:
        pool = await db.open_pool(database_url, min_size=1, max_size=8)
        try:
            jobs = JobStore(pool)
            worker = await new_worker(WorkerStore(pool, jobs), slots=64)
            return await body(Flows(jobs, FlowStore(pool, jobs), worker))
        finally:
            await pool.close()

    return asyncio.run(main())


def after(job_id: uuid.UUID, condition: int = SUCCEEDED) -> jobs_pb2.Dependency:
    return jobs_pb2.Dependency(job_id=str(job_id), condition=condition)  # type: ignore[arg-type]


def test_a_dependency_chain_runs_in_order_and_its_failure_cancels_the_rest(
    database_url: str,
) -> None:
    async def body(f: Flows) -> None:
        a = await f.submit(name="a")
        b = await f.submit(name="b", after=[after(a)])
        c = await f.submit(name="c", after=[after(b)])
        cleanup = await f.submit(name="cleanup", after=[after(b, FAILED)])
        report = await f.submit(name="report", after=[after(b, FINISHED)])
        assert [await f.state(j) for j in (b, c, cleanup, report)] == [JobState.BLOCKED] * 4
        assert await f.reason(b) == f"waiting for job {a} to succeed (now PENDING)"
        # Only the job that waits for nothing is queued.
        assert await f.claim() == [a]
        assert await f.claim() == []
        await f.end(a, JobState.SUCCEEDED)
        assert await f.advance() >= 1
        assert await f.state(b) is JobState.PENDING
        assert await f.state(c) is JobState.BLOCKED
        assert await f.claim() == [b]
        await f.advance()
        assert await f.reason(c) == f"waiting for job {b} to succeed (now ASSIGNED)"
        await f.end(b, JobState.FAILED, 3)
        await f.advance()
        assert await f.state(c) is JobState.CANCELLED
        assert await f.reason(c) == (f"dependency never met: job {b} ended FAILED but had to "
                                     "succeed")
        assert await f.state(cleanup) is JobState.PENDING
        assert await f.state(report) is JobState.PENDING

    run(database_url, body)


def test_dependencies_are_checked_at_submission(database_url: str) -> None:
    async def body(f: Flows) -> None:
        with pytest.raises(InvalidSpec, match="does not exist"):
            await f.submit(after=[after(uuid.uuid4())])
        done = await f.submit()
        await f.claim()
        await f.end(done, JobState.FAILED, 1)
        # A condition that can never hold is refused at once; one already met starts.
        with pytest.raises(Conflict, match="never met"):
            await f.submit(after=[after(done)])
        started = await f.submit(after=[after(done, FAILED)])
        assert await f.state(started) is JobState.PENDING

    run(database_url, body)


def test_cancelling_a_blocked_job_cancels_what_waits_for_it(database_url: str) -> None:
    async def body(f: Flows) -> None:
        a = await f.submit()
        b = await f.submit(after=[after(a)])
        c = await f.submit(after=[after(b)])
        changed, signals = await f.jobs.cancel(b, "not needed", "t")
        assert changed and signals == []
        await f.advance()
        assert await f.state(c) is JobState.CANCELLED
        assert await f.state(a) is JobState.PENDING

    run(database_url, body)


def test_an_indexed_job_keeps_its_parallelism_and_succeeds_with_its_indexes(
    database_url: str,
) -> None:
    async def body(f: Flows) -> None:
        parent = await f.submit(name="fan", completions=5, parallelism=2)
        assert await f.state(parent) is JobState.RUNNING
        indexes = await f.indexes(parent)
        assert sorted(indexes) == [0, 1, 2, 3, 4]
        assert [indexes[i][1] for i in range(5)] == [JobState.PENDING] * 2 + [JobState.BLOCKED] * 3
        seen: list[int] = []
        while len(seen) < 5:
            claimed = await f.claim()
            assert len(claimed) <= 2, "more indexes at once than the parallelism"
            by_id = {job_id: i for i, (job_id, _) in indexes.items()}
            for job_id in claimed:
                row, _ = await f.jobs.get(job_id)
                spec = jobs_pb2.JobSpec.FromString(row["spec"])
                assert spec.env["HODEI_JOB_INDEX"] == str(by_id[job_id])
                assert row["name"] == f"fan[{by_id[job_id]}]"
                await f.end(job_id, JobState.SUCCEEDED)
                seen.append(by_id[job_id])
            await f.advance()
        assert seen == [0, 1, 2, 3, 4]
        assert await f.state(parent) is JobState.SUCCEEDED
        counts = await f.flows.index_counts(parent)
        assert dict(counts) == {"waiting": 0, "active": 0, "succeeded": 5, "failed": 0}

    run(database_url, body)


def test_a_failing_index_is_retried_on_its_own_then_fails_the_job(database_url: str) -> None:
    async def body(f: Flows) -> None:
        retry = jobs_pb2.RetryPolicy(on=["failed"], backoff_seconds=0.001)
        parent = await f.submit(completions=3, max_attempts=2, retry=retry)
        indexes = await f.indexes(parent)
        bad = indexes[1][0]
        for job_id in await f.claim():
            await f.end(job_id, JobState.FAILED if job_id == bad else JobState.SUCCEEDED,
                        4 if job_id == bad else 0)
        assert await f.state(bad) is JobState.PENDING  # its own second attempt
        await f.advance()
        assert await f.state(parent) is JobState.RUNNING
        await make_runnable(f.jobs, bad)
        assert await f.claim() == [bad]
        await f.end(bad, JobState.FAILED, 4)
        await f.advance()
        assert await f.state(parent) is JobState.FAILED
        assert await f.reason(parent) == "1 of 3 indexes failed (1)"
        _, attempts = await f.jobs.get(bad)
        assert len(attempts) == 2

    run(database_url, body)


def test_the_failure_policy_fails_the_job_fails_an_index_or_ignores(database_url: str) -> None:
    async def body(f: Flows) -> None:
        policy = [
            jobs_pb2.FailureRule(action=jobs_pb2.FAILURE_ACTION_FAIL_JOB, exit_codes=[42]),
            jobs_pb2.FailureRule(action=jobs_pb2.FAILURE_ACTION_IGNORE, exit_codes=[75]),
            jobs_pb2.FailureRule(action=jobs_pb2.FAILURE_ACTION_FAIL_INDEX, exit_codes=[3]),
        ]
        retry = jobs_pb2.RetryPolicy(on=["failed"], backoff_seconds=0.001)
        parent = await f.submit(completions=4, parallelism=2, max_attempts=3, retry=retry,
                                failure_policy=policy)
        first = await f.claim()
        # Exit 75 is ignored: the index runs again, its attempts not spent.
        assert await f.end(first[0], JobState.FAILED, 75) is JobState.PENDING
        row, _ = await f.jobs.get(first[0])
        assert row["max_attempts"] == 4
        # Exit 3 fails its index at once, whatever attempts remain.
        assert await f.end(first[1], JobState.FAILED, 3) is JobState.FAILED
        await f.advance()
        assert await f.state(parent) is JobState.RUNNING
        await make_runnable(f.jobs, first[0])
        again = await f.claim()
        assert first[0] in again and len(again) == 2
        # Exit 42 fails the whole job now: the indexes left are cancelled.
        other = next(j for j in again if j != first[0])
        await f.end(first[0], JobState.FAILED, 42)
        progress = await f.flows.advance("leader", "replica")
        assert await f.state(parent) is JobState.FAILED
        assert "failure policy fails the job" in await f.reason(parent)
        assert [s.job_id for s in progress.signals] == [other]
        states = {state for _, state in (await f.indexes(parent)).values()}
        assert JobState.PENDING not in states and JobState.BLOCKED not in states

    run(database_url, body)


def test_cancelling_an_indexed_job_cancels_its_indexes(database_url: str) -> None:
    async def body(f: Flows) -> None:
        parent = await f.submit(completions=3, parallelism=1)
        [running] = await f.claim()
        changed, signals = await f.jobs.cancel(parent, "enough", "t")
        assert changed and [s.job_id for s in signals] == [running]
        assert await f.state(parent) is JobState.CANCELLED
        states = sorted(state.value for _, state in (await f.indexes(parent)).values())
        assert states == ["ASSIGNED", "CANCELLED", "CANCELLED"]  # the running one is told
        with pytest.raises(Conflict, match="indexed job"):
            await f.jobs.retry(parent, "t")

    run(database_url, body)


def test_an_indexed_job_that_waits_starts_its_indexes_once_unblocked(database_url: str) -> None:
    async def body(f: Flows) -> None:
        first = await f.submit()
        parent = await f.submit(completions=2, after=[after(first)])
        assert await f.state(parent) is JobState.BLOCKED
        assert await f.indexes(parent) == {}
        await f.claim()
        await f.end(first, JobState.SUCCEEDED)
        await f.advance()
        assert await f.state(parent) is JobState.RUNNING
        assert len(await f.claim()) == 2

    run(database_url, body)


def test_ttl_after_finished_deletes_the_row_its_attempts_and_its_output(
    database_url: str,
) -> None:
    async def body(f: Flows) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
        short = await f.submit(ttl_after_finished_seconds=0.0)
        kept = await f.submit(ttl_after_finished_seconds=3600.0)
        forever = await f.submit(command=["true"], completions=1, ttl_after_finished_seconds=0)
        await f.claim()
        async with f.jobs.pool.connection() as conn:
            await f.jobs.store_chunks(conn, [
                {"job_id": short, "attempt": 1, "seq": 1, "stream": 1, "data": b"out",
                 "worker_id": f.worker}])
        for job_id in (short, kept):
            await f.end(job_id, JobState.SUCCEEDED)
        [index] = [j for j, _ in (await f.indexes(forever)).values()]
        await f.end(index, JobState.SUCCEEDED)
        await f.advance()
        assert await f.flows.prune_expired("leader") == 2
        return short, kept, forever

    short, kept, indexed = run(database_url, body)
    with psycopg.connect(database_url) as conn:
        def count(sql: str, job_id: uuid.UUID) -> int:
            row = conn.execute(sql, (job_id,)).fetchone()
            assert row is not None
            return int(row[0])

        for table, column in (("jobs", "id"), ("job_attempts", "job_id"),
                              ("job_logs", "job_id"), ("jobs", "parent_id")):
            assert count(f"SELECT count(*) FROM {table} WHERE {column} = %s", short) == 0
            assert count(f"SELECT count(*) FROM {table} WHERE {column} = %s", indexed) == 0
        assert count("SELECT count(*) FROM jobs WHERE id = %s", kept) == 1
        assert count("SELECT count(*) FROM events WHERE aggregate_id = %s::text"
                     " AND type = 'job.deleted'", short) == 1


def test_a_job_others_wait_for_is_kept_past_its_ttl(database_url: str) -> None:
    async def body(f: Flows) -> None:
        a = await f.submit(ttl_after_finished_seconds=0)
        gate = await f.submit()
        b = await f.submit(after=[after(a), after(gate)])
        await f.claim()
        await f.end(a, JobState.SUCCEEDED)
        await f.advance()
        assert await f.flows.prune_expired("leader") == 0  # b still waits, on gate too
        await f.end(gate, JobState.SUCCEEDED)
        await f.advance()
        assert await f.state(b) is JobState.PENDING
        assert await f.flows.prune_expired("leader") == 1

    run(database_url, body)
