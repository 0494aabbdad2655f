"""The SQL store against a real PostgreSQL: queue, fencing, idempotency, tokens."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
import pytest

from hodei_api.v1 import jobs_pb2, workers_pb2
from hodei_server.errors import Conflict, NotFound, Unauthenticated
from hodei_server.store import db
from hodei_server.store.events import EventStore, JobFilter
from hodei_server.store.jobs import Claimed, Ending, JobStore
from hodei_server.store.states import JobState
from hodei_server.store.workers import WorkerStore

T = TypeVar("T")


def run(database_url: str, body: Callable[[JobStore, WorkerStore], Awaitable[T]]) -> T:
    async def main() -> T:
        pool = await db.open_pool(database_url, min_size=1, max_size=8)
        try:
            jobs = JobStore(pool)
            return await body(jobs, WorkerStore(pool, jobs))
        finally:
            await pool.close()

    return asyncio.run(main())


def spec(*argv: str, **kwargs: Any) -> jobs_pb2.JobSpec:
    return jobs_pb2.JobSpec(command=list(argv) or ["true"], **kwargs)


def events_of(url: str, job_id: uuid.UUID) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT type FROM events WHERE aggregate_id = %s ORDER BY id", (str(job_id),)
        ).fetchall()
    return [r[0] for r in rows]


async def new_worker(workers: WorkerStore, slots: int = 4) -> uuid.UUID:
    token = await workers.create_bootstrap_token("test", {}, 60)
    worker_id, _ = await workers.register(token, "w", "host", {}, workers_pb2.Capacity(slots=slots),
                                          "test")
    return worker_id


ANY = [{"labels": {}, "cpus": 1e9, "memory_mb": 2**40}]


def first_fit(worker: uuid.UUID) -> Callable[[list[Claimed]], list[tuple[uuid.UUID, uuid.UUID]]]:
    return lambda claimed: [(c.id, worker) for c in claimed]


def test_submit_is_idempotent_per_key(database_url: str) -> None:
    async def body(jobs: JobStore, _: WorkerStore) -> None:
        first, created = await jobs.submit(spec("echo"), "key-1", "test")
        again, created_again = await jobs.submit(spec("echo", "other"), "key-1", "test")
        assert created and not created_again
        assert first["id"] == again["id"]
        other, created_other = await jobs.submit(spec("echo"), "", "test")
        assert created_other and other["id"] != first["id"]
        rows = await EventStore(jobs.pool).job_page(JobFilter(), None, 10)
        assert len(rows) == 2

    run(database_url, body)


def test_submit_writes_its_event_in_the_same_transaction(database_url: str) -> None:
    async def body(jobs: JobStore, _: WorkerStore) -> uuid.UUID:
        row, _ = await jobs.submit(spec(), "", "test")
        return row["id"]

    job_id = run(database_url, body)
    assert events_of(database_url, job_id) == ["job.created"]


def test_list_paginates_newest_first(database_url: str) -> None:
    async def body(jobs: JobStore, _: WorkerStore) -> None:
        events = EventStore(jobs.pool)
        ids = [(await jobs.submit(spec(), "", "t"))[0]["id"] for _ in range(7)]
        seen: list[uuid.UUID] = []
        after = None
        while True:
            rows = await events.job_page(JobFilter(), after, 3)
            seen += [r["id"] for r in rows]
            if len(rows) < 3:
                break
            after = (rows[-1]["created_at"], rows[-1]["id"])
        assert seen == list(reversed(ids))
        pending = await events.job_page(JobFilter(states=frozenset({"PENDING"})), None, 100)
        assert len(pending) == 7
        done = await events.job_page(JobFilter(states=frozenset({"SUCCEEDED"})), None, 100)
        assert done == []

    run(database_url, body)


def test_concurrent_claims_never_take_the_same_job(database_url: str) -> None:
    async def body(jobs: JobStore, workers: WorkerStore) -> None:
        for _ in range(60):
            await jobs.submit(spec(), "", "t")
        w1, w2, w3 = [await new_worker(workers) for _ in range(3)]

        async def drain(worker: uuid.UUID) -> list[uuid.UUID]:
            got: list[uuid.UUID] = []
            while True:
                batch = await jobs.claim_and_assign(ANY, 4, first_fit(worker), "t")
                if not batch:
                    return got
                got += [a.job_id for a in batch]

        results = await asyncio.gather(drain(w1), drain(w2), drain(w3))
        claimed = [j for r in results for j in r]
        assert len(claimed) == 60
        assert len(set(claimed)) == 60

    run(database_url, body)


def test_claim_skips_jobs_no_candidate_fits(database_url: str) -> None:
    async def body(jobs: JobStore, workers: WorkerStore) -> None:
        gpu, _ = await jobs.submit(spec(selector={"gpu": "yes"}), "", "t")
        big, _ = await jobs.submit(spec(resources=jobs_pb2.Resources(cpus=64)), "", "t")
        plain, _ = await jobs.submit(spec(), "", "t")
        worker = await new_worker(workers)
        candidates = [{"labels": {"os": "linux"}, "cpus": 4, "memory_mb": 1024}]
        batch = await jobs.claim_and_assign(candidates, 10, first_fit(worker), "t")
        assert [a.job_id for a in batch] == [plain["id"]]
        assert await jobs.state_of(gpu["id"]) is JobState.PENDING
        assert await jobs.state_of(big["id"]) is JobState.PENDING

    run(database_url, body)


def test_results_are_fenced_by_attempt_and_worker(database_url: str) -> None:
    async def body(jobs: JobStore, workers: WorkerStore) -> None:
        row, _ = await jobs.submit(spec(max_attempts=2), "", "t")
        job_id = row["id"]
        owner, intruder = await new_worker(workers), await new_worker(workers)
        [assignment] = await jobs.claim_and_assign(ANY, 1, first_fit(owner), "t")
        assert assignment.attempt == 1
        async with jobs.pool.connection() as conn:
            assert not await jobs.mark_running(conn, job_id, 1, intruder, 1)
            assert await jobs.mark_running(conn, job_id, 1, owner, 1)
            assert await jobs.finish(conn, job_id, 1, intruder, JobState.SUCCEEDED, 0, "",
                                     "t") is None
            assert await jobs.finish(conn, job_id, 2, owner, JobState.SUCCEEDED, 0, "",
                                     "t") is None
            assert await jobs.finish(conn, job_id, 1, owner, JobState.FAILED, 3, "",
                                     "t") is JobState.FAILED
            # a duplicate report changes nothing
            assert await jobs.finish(conn, job_id, 1, owner, JobState.SUCCEEDED, 0, "",
                                     "t") is None
        job, attempts = await jobs.get(job_id)
        assert (job["state"], job["exit_code"]) == ("FAILED", 3)
        assert [(a["attempt"], a["state"], a["exit_code"]) for a in attempts] == [(1, "FAILED", 3)]

    run(database_url, body)
    with psycopg.connect(database_url) as conn:
        types = [r[0] for r in conn.execute("SELECT type FROM events WHERE aggregate_type='job'"
                                            " ORDER BY id").fetchall()]
    assert types == ["job.created", "job.assigned", "job.running", "job.failed"]


def test_a_lost_attempt_is_requeued_then_fails_when_attempts_run_out(database_url: str) -> None:
    async def body(jobs: JobStore, workers: WorkerStore) -> None:
        row, _ = await jobs.submit(spec(max_attempts=2), "", "t")
        job_id = row["id"]
        worker = await new_worker(workers)
        for attempt, expected in [(1, JobState.PENDING), (2, JobState.FAILED)]:
            [a] = await jobs.claim_and_assign(ANY, 1, first_fit(worker), "t")
            assert a.attempt == attempt
            async with jobs.pool.connection() as conn:
                state = await jobs.finish(conn, job_id, attempt, worker, JobState.LOST, None,
                                          "gone", "t")
            assert state is expected
            await make_runnable(jobs, job_id)
        _, attempts = await jobs.get(job_id)
        assert [a["state"] for a in attempts] == ["LOST", "LOST"]

    run(database_url, body)


async def make_runnable(jobs: JobStore, job_id: uuid.UUID) -> None:
    """Skip a retry's backoff delay."""
    async with jobs.pool.connection() as conn:
        await conn.execute("UPDATE jobs SET not_before = now() WHERE id = %s", (job_id,))


def test_failures_are_retried_with_backoff_only_when_the_policy_says_so(
    database_url: str,
) -> None:
    async def body(jobs: JobStore, workers: WorkerStore) -> None:
        policy = jobs_pb2.RetryPolicy(on=["failed"], backoff_seconds=30, max_backoff_seconds=60)
        retried, _ = await jobs.submit(spec(max_attempts=2, retry=policy), "", "t")
        plain, _ = await jobs.submit(spec(max_attempts=2), "", "t")
        worker = await new_worker(workers)
        await jobs.claim_and_assign(ANY, 2, first_fit(worker), "t")
        async with jobs.pool.connection() as conn:
            assert await jobs.finish(conn, retried["id"], 1, worker, JobState.FAILED, 1, "",
                                     "t") is JobState.PENDING
            assert await jobs.finish(conn, plain["id"], 1, worker, JobState.FAILED, 1, "",
                                     "t") is JobState.FAILED
            cur = await conn.execute(
                "SELECT extract(epoch FROM not_before - now()) AS wait FROM jobs WHERE id = %s",
                (retried["id"],),
            )
            row = await cur.fetchone()
            assert row is not None and 15 <= row["wait"] <= 30  # 30 s with jitter in [0.5, 1)
        # Backing off: not claimable yet.
        assert await jobs.claim_and_assign(ANY, 2, first_fit(worker), "t") == []

    run(database_url, body)


def test_retry_runs_a_finished_job_again(database_url: str) -> None:
    async def body(jobs: JobStore, workers: WorkerStore) -> None:
        row, _ = await jobs.submit(spec(), "", "t")
        job_id = row["id"]
        worker = await new_worker(workers)
        with pytest.raises(Conflict, match="only a finished job"):
            await jobs.retry(job_id, "t")
        await jobs.claim_and_assign(ANY, 1, first_fit(worker), "t")
        async with jobs.pool.connection() as conn:
            await jobs.finish(conn, job_id, 1, worker, JobState.FAILED, 2, "", "t")
        await jobs.retry(job_id, "t")
        job, _ = await jobs.get(job_id)
        assert (job["state"], job["exit_code"], job["max_attempts"]) == ("PENDING", None, 2)
        [again] = await jobs.claim_and_assign(ANY, 1, first_fit(worker), "t")
        assert again.attempt == 2
        with pytest.raises(NotFound):
            await jobs.retry(uuid.uuid4(), "t")

    run(database_url, body)


def test_an_attempt_that_never_started_does_not_spend_the_budget(database_url: str) -> None:
    async def body(jobs: JobStore, workers: WorkerStore) -> None:
        row, _ = await jobs.submit(spec(max_attempts=1), "", "t")
        worker = await new_worker(workers)
        await jobs.claim_and_assign(ANY, 1, first_fit(worker), "t")
        async with jobs.pool.connection() as conn:
            state = await jobs.finish(conn, row["id"], 1, worker, JobState.LOST, None,
                                      "agent is draining", "t", unstarted=True)
        assert state is JobState.PENDING
        [second] = await jobs.claim_and_assign(ANY, 1, first_fit(worker), "t")
        assert second.attempt == 2

    run(database_url, body)


def test_cancel_in_each_state(database_url: str) -> None:
    async def body(jobs: JobStore, workers: WorkerStore) -> None:
        pending, _ = await jobs.submit(spec(), "", "t")
        assert await jobs.cancel(pending["id"], "stop", "t") == (True, [])
        assert await jobs.state_of(pending["id"]) is JobState.CANCELLED
        assert await jobs.cancel(pending["id"], "stop", "t") == (False, [])
        running, _ = await jobs.submit(spec(), "", "t")
        worker = await new_worker(workers)
        await jobs.claim_and_assign(ANY, 1, first_fit(worker), "t")
        changed, [target] = await jobs.cancel(running["id"], "stop", "t")
        assert changed
        assert (target.job_id, target.attempt, target.worker_id) == (running["id"], 1, worker)
        with pytest.raises(NotFound):
            await jobs.cancel(uuid.uuid4(), "stop", "t")

    run(database_url, body)


def test_log_chunks_are_idempotent_and_fenced(database_url: str) -> None:
    async def body(jobs: JobStore, workers: WorkerStore) -> None:
        row, _ = await jobs.submit(spec(), "", "t")
        job_id = row["id"]
        owner, other = await new_worker(workers), await new_worker(workers)
        await jobs.claim_and_assign(ANY, 1, first_fit(owner), "t")

        def chunk(seq: int, worker: uuid.UUID, data: bytes) -> dict[str, Any]:
            return {"job_id": job_id, "attempt": 1, "seq": seq, "stream": 1, "data": data,
                    "worker_id": worker}

        async with jobs.pool.connection() as conn:
            await jobs.store_chunks(conn, [chunk(1, owner, b"a"), chunk(2, owner, b"b")])
            await jobs.store_chunks(conn, [chunk(2, owner, b"B"), chunk(3, owner, b"c")])
            await jobs.store_chunks(conn, [chunk(4, other, b"forged")])
            # Declared lost: the attempt is no longer active, its late output is refused.
            await jobs.finish(conn, job_id, 1, owner, JobState.LOST, None, "gone", "t")
            await jobs.store_chunks(conn, [chunk(4, owner, b"late")])
        rows = await jobs.read_chunks(job_id, 0, 0)
        assert [(r["seq"], bytes(r["data"])) for r in rows] == [(1, b"a"), (2, b"b"), (3, b"c")]
        assert [r["seq"] for r in await jobs.read_chunks(job_id, 1, 2)] == [3]

    run(database_url, body)


def test_bootstrap_tokens_are_one_shot_and_expire(database_url: str) -> None:
    async def body(jobs: JobStore, workers: WorkerStore) -> None:
        capacity = workers_pb2.Capacity(slots=1)
        token = await workers.create_bootstrap_token("p", {"zone": "a"}, 60)
        worker_id, credential = await workers.register(token, "w", "h", {"x": "1"}, capacity, "")
        with pytest.raises(Unauthenticated):
            await workers.register(token, "w2", "h", {}, capacity, "")
        expired = await workers.create_bootstrap_token("p", {}, -1)
        with pytest.raises(Unauthenticated):
            await workers.register(expired, "w3", "h", {}, capacity, "")
        with pytest.raises(Unauthenticated):
            await workers.register("forged", "w4", "h", {}, capacity, "")
        row = await workers.authenticate(str(worker_id), credential)
        assert row["labels"] == {"x": "1", "zone": "a"} and row["provider"] == "p"
        with pytest.raises(Unauthenticated):
            await workers.authenticate(str(worker_id), "wrong")
        with pytest.raises(Unauthenticated):
            await workers.authenticate("not-a-uuid", credential)

    run(database_url, body)
    with psycopg.connect(database_url) as conn:
        hashes = conn.execute("SELECT token_hash FROM bootstrap_tokens").fetchall()
    assert all(len(bytes(h[0])) == 32 for h in hashes)  # only hashes are stored


def test_silent_workers_become_lost_and_their_jobs_requeue(database_url: str) -> None:
    async def body(jobs: JobStore, workers: WorkerStore) -> None:
        row, _ = await jobs.submit(spec(max_attempts=3), "", "t")
        worker = await new_worker(workers)
        await jobs.claim_and_assign(ANY, 1, first_fit(worker), "t")
        assert await workers.expire_lost(3600) == []
        assert await workers.expire_lost(-1) == [worker]
        assert await jobs.state_of(row["id"]) is JobState.PENDING

    run(database_url, body)


def test_submit_many_is_one_statement_in_order_and_idempotent(database_url: str) -> None:
    async def body(jobs: JobStore, _: WorkerStore) -> tuple[list[Any], list[Any]]:
        entries = [(spec("echo", str(i), retry=jobs_pb2.RetryPolicy(on=["lost", "failed"])),
                    f"k{i}" if i % 2 else "", "trace-7" if i == 4 else "") for i in range(5)]
        # A key seen earlier in the same call.
        entries.append((spec("echo", "dup"), "k1", ""))
        async with jobs.pool.transaction() as conn:
            first = await jobs.submit_many_in(conn, entries, "test", "alice")
        async with jobs.pool.transaction() as conn:
            again = await jobs.submit_many_in(conn, entries[:3], "test", "alice")
        return first, again

    first, again = run(database_url, body)
    assert [created for _, created in first] == [True] * 5 + [False]
    assert first[5][0] == first[1][0]
    assert len({job_id for job_id, _ in first[:5]}) == 5
    assert again[0][1] and not again[1][1] and again[2][1]  # only k1 has a key
    assert again[1][0] == first[1][0]
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT id, spec, state, retry_on, submitted_by, correlation_id "
                            "FROM jobs WHERE id = ANY(%s)", ([j for j, _ in first[:5]],)
                            ).fetchall()
        created = conn.execute("SELECT count(*) FROM events WHERE type = 'job.created'"
                               ).fetchone()
    by_id = {r[0]: r for r in rows}
    for i, (job_id, _) in enumerate(first[:5]):
        stored = jobs_pb2.JobSpec.FromString(by_id[job_id][1])
        assert list(stored.command) == ["echo", str(i)]
        # The correlation id given, else the idempotency key (as for one job).
        correlation = "trace-7" if i == 4 else (f"k{i}" if i % 2 else "")
        assert by_id[job_id][2:] == ("PENDING", ["lost", "failed"], "alice", correlation)
    assert created is not None and created[0] == 7  # one event per job created, none for a key seen


def test_submit_many_wakes_dispatchers_once(database_url: str) -> None:
    async def body(jobs: JobStore, _: WorkerStore) -> list[str]:
        listener = await psycopg.AsyncConnection.connect(database_url, autocommit=True)
        try:
            await listener.execute("LISTEN hodei_jobs")
            async with jobs.pool.transaction() as conn:
                await jobs.submit_many_in(conn, [(spec(), "", "")] * 50, "test")
            heard = []
            async for note in listener.notifies(timeout=0.5):
                heard.append(note.channel)
            return heard
        finally:
            await listener.close()

    assert run(database_url, body) == ["hodei_jobs"]


def test_an_attempt_started_and_ended_in_one_batch_is_written_once(database_url: str) -> None:
    async def body(jobs: JobStore, workers: WorkerStore) -> list[uuid.UUID]:
        rows = [(await jobs.submit(spec(), "", "t"))[0] for _ in range(4)]
        ids = [r["id"] for r in rows]
        owner, intruder = await new_worker(workers), await new_worker(workers)
        assigned = await jobs.claim_and_assign(ANY, 4, first_fit(owner), "t")
        assert sorted(a.job_id for a in assigned) == sorted(ids)
        async with jobs.pool.connection() as conn:
            # ids[0] was reported started in an earlier batch; ids[1] and ids[2] start and
            # end in this one; ids[3] ends in this one as someone else's (refused).
            assert await jobs.mark_running(conn, ids[0], 1, owner, 10)
            endings = [Ending(ids[0], 1, JobState.SUCCEEDED, 0, ""),
                       Ending(ids[1], 1, JobState.SUCCEEDED, 0, "", True, 11),
                       Ending(ids[2], 1, JobState.CANCELLED, None, "stopped", True, 12)]
            assert await jobs.finish_many(conn, owner, endings) == {(i, 1) for i in ids[:3]}
            assert await jobs.finish_many(conn, intruder, [
                Ending(ids[3], 1, JobState.SUCCEEDED, 0, "", True, 13)]) == set()
            # a duplicate report changes nothing
            assert await jobs.finish_many(conn, owner, endings[1:2]) == set()
        for job_id, state in zip(ids, ["SUCCEEDED", "SUCCEEDED", "CANCELLED", "ASSIGNED"],
                                 strict=True):
            job, attempts = await jobs.get(job_id)
            assert job["state"] == state
            assert (job["started_at"] is not None) == (state != "ASSIGNED")
            assert [a["state"] for a in attempts] == [state]
            assert (attempts[0]["started_at"] is not None) == (state != "ASSIGNED")
        return ids

    ids = run(database_url, body)
    for job_id, expected in zip(ids, [
            ["job.created", "job.assigned", "job.running", "job.succeeded"],
            ["job.created", "job.assigned", "job.running", "job.succeeded"],
            ["job.created", "job.assigned", "job.running", "job.cancelled"],
            ["job.created", "job.assigned"]], strict=True):
        assert events_of(database_url, job_id) == expected
    with psycopg.connect(database_url) as conn:
        [(versions,)] = conn.execute(  # its start recorded once, with the pid it reported
            "SELECT count(*) FROM events WHERE aggregate_id = %s AND payload ? 'pid'",
            (str(ids[1]),)).fetchall()
    assert versions == 1
