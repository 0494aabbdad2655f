"""Statements that name jobs by id find them by id, whatever the statistics say.

psycopg prepares a statement it has run five times, and PostgreSQL may then keep a generic
plan for it, made from the table's statistics. Right after a burst of submissions those
still describe a table with no queue at all, and a plan that walks the pending index (or
the blocked one, or the state-ordered one) looks cheaper than looking each id up, so a
statement about three jobs would read every job queued, once per call. These tests make
exactly those statistics (many finished jobs, none waiting, analysed) and read the generic
plan of every named statement that takes job ids.
"""

from __future__ import annotations

import re

import psycopg
import pytest

from hodei_server.store.sqlfiles import queries

# Indexes whose size is a queue's: a statement about given jobs must not walk them.
QUEUE_INDEXES = ("jobs_pending_idx", "jobs_blocked_idx", "jobs_state_created_idx")
# Statements that read a queue's index on purpose, and why that stays cheap.
ON_PURPOSE = {
    # Whether any job waits: the first entry of the pending index in its order answers.
    "insert_job": {"jobs_pending_idx"},
}
_PARAM = re.compile(r"%\((\w+)\)s")
_SCAN = re.compile(r"(?:Index Scan|Index Only Scan|Bitmap Index Scan)(?: Backward)? using (\w+)")


def _by_id(body: str) -> bool:
    """A statement about given jobs: it takes `id` or `ids` and reads the jobs table."""
    names = set(_PARAM.findall(body))
    return bool(names & {"id", "ids"}) and re.search(r"\bjobs\b", body) is not None


def _generic_plan(conn: psycopg.Connection, name: str, body: str) -> str:
    order: list[str] = []
    for param in _PARAM.findall(body):
        if param not in order:
            order.append(param)
    text = _PARAM.sub(lambda m: f"${order.index(m.group(1)) + 1}", body).replace("%%", "%")
    conn.execute(f"PREPARE {name} AS {text}")
    args = f"({', '.join('NULL' for _ in order)})" if order else ""
    rows = conn.execute(f"EXPLAIN EXECUTE {name}{args}").fetchall()
    conn.execute(f"DEALLOCATE {name}")
    return "\n".join(row[0] for row in rows)


@pytest.fixture
def short_queue_statistics(database_url: str) -> str:
    """20,000 finished jobs analysed: to the planner, no job is pending, blocked, assigned."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("""
            INSERT INTO jobs (id, spec, state, attempt, created_at, not_before, finished_at)
            SELECT gen_random_uuid(), '\\x'::bytea, 'SUCCEEDED', 1,
                   now() - g * interval '1 second', now(), now()
            FROM generate_series(1, 20000) AS g""")
        conn.execute("ANALYZE jobs")
    return database_url


def test_statements_by_job_id_never_walk_a_queue(short_queue_statistics: str) -> None:
    by_id = {name: body for name, body in queries().items() if _by_id(body)}
    assert {"assign_jobs", "mark_running_many", "cancel_pending_job", "unblock_job",
            "set_waiting_reasons"} <= set(by_id), "the selection missed statements it must hold"
    walking = {}
    with psycopg.connect(short_queue_statistics, autocommit=True) as conn:
        conn.execute("SET plan_cache_mode = force_generic_plan")
        for name, body in sorted(by_id.items()):
            plan = _generic_plan(conn, name, body)
            queues = sorted(set(_SCAN.findall(plan)) & set(QUEUE_INDEXES)
                            - ON_PURPOSE.get(name, set()))
            if queues:
                walking[name] = queues
    assert walking == {}, f"generic plans walking a queue's index: {walking}"


def test_the_check_sees_a_statement_that_walks_the_queue(short_queue_statistics: str) -> None:
    """The same check on a statement written the plain way: it must catch it."""
    plain = ("UPDATE jobs SET state = 'ASSIGNED' FROM unnest(%(ids)s::uuid[]) AS i(id) "
             "WHERE jobs.id = i.id AND jobs.state = 'PENDING' RETURNING jobs.id")
    with psycopg.connect(short_queue_statistics, autocommit=True) as conn:
        conn.execute("SET plan_cache_mode = force_generic_plan")
        plan = _generic_plan(conn, "plain_assign", plain)
    assert "jobs_pending_idx" in plan
