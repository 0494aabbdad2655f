"""Flat with depth: dispatch with 1,000 and with 100,000 jobs waiting, and the first page of
`job list` with 1,000,000 finished jobs in the table, on the embedded stack (2 agents x 4
slots) over a private PostgreSQL with pg_stat_statements (pgstat.py).

How the tables are filled: straight into PostgreSQL, one `INSERT ... SELECT ... FROM
generate_series(1, N)` each (jobs with the spec of `true`, stored as SubmitJob stores it):
the queue in one transaction, committed with the dispatchers' NOTIFY, so the agents start on
a queue that is already that deep; the finished jobs as SUCCEEDED rows a second apart, then
ANALYZE.

- dispatch rate: assignments per second from the 100th to the 600th job assigned after the
  queue was filled (job_attempts.assigned_at, PostgreSQL's clock);
- claim latency: the claim statement's mean execution time (pg_stat_statements) over the
  same run, and the whole claim round's (claim and assignment statements);
- `job list`: the ListJobs call hodeictl makes for its first page (50 jobs), median of 20,
  with no filter and filtered on one state.

Usage: python benchmarks/bench_scale.py [SMALL] [DEEP] [FINISHED]
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import psycopg
from pgstat import private_postgres, reset, statement_counts
from reference import measure
from stack import Stack, embedded_stack

from hodei_api.v1 import jobs_pb2, jobs_pb2_grpc

SPEC = jobs_pb2.JobSpec(command=["true"]).SerializeToString(deterministic=True)
WINDOW = (100, 600)  # the assignments the rate is measured over
PAGE = 50  # hodeictl job list's default

FILL_PENDING = """
INSERT INTO jobs (id, spec, state, created_at, not_before)
SELECT gen_random_uuid(), %(spec)s, 'PENDING', now() + g * interval '1 microsecond', now()
FROM generate_series(1, %(count)s) AS g
"""
FILL_FINISHED = """
INSERT INTO jobs (id, name, spec, state, attempt, exit_code, created_at, updated_at,
                  started_at, finished_at)
SELECT gen_random_uuid(), 'old-' || g, %(spec)s, 'SUCCEEDED', 1, 0,
       now() - g * interval '1 second', now() - g * interval '1 second',
       now() - g * interval '1 second', now() - g * interval '1 second'
FROM generate_series(1, %(count)s) AS g
"""


def dispatch_at_depth(depth: int) -> tuple[float, float, float]:
    """(assignments/s, claim statement ms, claim round ms) with `depth` jobs queued."""
    with private_postgres() as url:
        os.environ["HODEI_DATABASE_URL"] = url
        with embedded_stack() as stack:
            stack.warm_up()
            stack.wait_workers(2)
            with psycopg.connect(url, autocommit=True) as conn:
                before = conn.execute("SELECT count(*) FROM job_attempts").fetchone()[0]
                with conn.transaction():
                    conn.execute(FILL_PENDING, {"spec": SPEC, "count": depth})
                    conn.execute("SELECT pg_notify('hodei_jobs', '')")
                # Counted from here: a claim round that runs while the filling transaction is
                # still open walks its uncommitted index entries (with 100,000 of them, about
                # 10 ms once), a cost of the fill, not of a queue that deep.
                reset(url)
                want = before + WINDOW[1]
                deadline = time.monotonic() + 300
                while conn.execute("SELECT count(*) FROM job_attempts").fetchone()[0] < want:
                    if time.monotonic() > deadline:
                        raise RuntimeError("the agents did not take the jobs in time")
                    time.sleep(0.2)
                calls, times = statement_counts(url)
                first, last = conn.execute(
                    "SELECT min(assigned_at), max(assigned_at) FROM (SELECT assigned_at "
                    "FROM job_attempts ORDER BY assigned_at OFFSET %s LIMIT %s) AS w",
                    (before + WINDOW[0], WINDOW[1] - WINDOW[0])).fetchone()
    rate = (WINDOW[1] - WINDOW[0] - 1) / (last - first).total_seconds()
    claim = times["claim_pending_jobs"] / max(1, calls["claim_pending_jobs"])
    assign = next((times[n] / max(1, calls[n]) for n in ("assign_jobs", "assign_job")
                   if calls[n]), 0.0)
    return rate, claim, claim + assign


def first_pages(finished: int) -> dict[str, float]:
    """Median ms of the first `job list` page by filter, with `finished` jobs in the table."""
    results: dict[str, float] = {}
    with private_postgres() as url:
        os.environ["HODEI_DATABASE_URL"] = url
        with embedded_stack() as stack:
            with psycopg.connect(url, autocommit=True) as conn:
                started = time.perf_counter()
                conn.execute(FILL_FINISHED, {"spec": SPEC, "count": finished})
                conn.execute("ANALYZE jobs")
                filled = time.perf_counter() - started
            print(f"  (filled {finished} finished jobs in {filled:.1f} s)")
            results = _time_pages(stack)
    return results


def _time_pages(stack: Stack) -> dict[str, float]:
    filters = {"no filter": [], "--state succeeded": [jobs_pb2.JOB_STATE_SUCCEEDED],
               "--state running": [jobs_pb2.JOB_STATE_RUNNING],
               "--state failed --state running": [jobs_pb2.JOB_STATE_FAILED,
                                                  jobs_pb2.JOB_STATE_RUNNING]}
    results = {}
    with stack.channel() as channel:
        stub = jobs_pb2_grpc.JobServiceStub(channel)
        for label, states in filters.items():
            request = jobs_pb2.ListJobsRequest(states=states, page_size=PAGE)
            samples = []
            for _ in range(20):
                start = time.perf_counter()
                stub.ListJobs(request, timeout=60)
                samples.append((time.perf_counter() - start) * 1000)
            results[label] = statistics.median(samples)
    return results


def main() -> None:
    small = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000
    deep = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
    finished = int(sys.argv[3]) if len(sys.argv) > 3 else 1_000_000
    rates = {depth: dispatch_at_depth(depth) for depth in (small, deep)}
    for depth, (rate, claim, round_ms) in rates.items():
        print(f"{depth:>7} jobs queued: {rate:.0f} assignments/s; claim statement "
              f"{claim:.2f} ms, claim round (claim + assignment) {round_ms:.2f} ms")
    (r1, c1, _), (r2, c2, _) = rates[small], rates[deep]
    print(f"  at {deep} against {small}: dispatch rate {r2 / r1 - 1:+.0%}, "
          f"claim statement {c2 / c1 - 1:+.0%}")
    print(f"job list, first page of {PAGE}, with {finished} finished jobs in the table:")
    for label, ms in first_pages(finished).items():
        print(f"  {label:32s} {ms:7.1f} ms (median of 20 ListJobs calls)")
    print(f"  {measure().describe()}")


if __name__ == "__main__":
    main()
