"""The event feed's order against real PostgreSQL transactions: an event committed late is
never skipped, none comes twice, and the Python filter agrees with the SQL one."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any

import psycopg
import pytest

from hodei_server.dispatch.feeds import EventBatch, EventHub, Mailbox
from hodei_server.store import db
from hodei_server.store.events import EventFilter, EventStore, Position

INSERT = ("INSERT INTO events (type, aggregate_type, aggregate_id, payload, actor, "
          "correlation_id) VALUES (%s, %s, %s, %s::jsonb, %s, %s) RETURNING id")


async def _insert(conn: psycopg.AsyncConnection[Any], kind: str, aggregate: str = "job",
                  aggregate_id: str = "", payload: str = "{}", actor: str = "test",
                  correlation: str = "") -> int:
    cur = await conn.execute(INSERT, (kind, aggregate, aggregate_id or str(uuid.uuid4()),
                                      payload, actor, correlation))
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def _take(mailbox: Mailbox[EventBatch], wait: float = 10.0) -> list[int]:
    batches = await asyncio.wait_for(mailbox.take(), wait)
    return [e["id"] for batch in batches for e in batch.events]


def test_an_event_committed_late_is_neither_skipped_nor_repeated(database_url: str) -> None:
    async def scenario() -> None:
        pool = await db.open_pool(database_url)
        store = EventStore(pool)
        hub = EventHub(store, buffer=1000)
        stop = asyncio.Event()
        runner = asyncio.create_task(hub.run(stop))

        async def start(position: Position) -> Position:
            return position

        mailbox, _ = await hub.join(start, jobs=False)
        slow = await psycopg.AsyncConnection.connect(database_url)
        quick = await psycopg.AsyncConnection.connect(database_url, autocommit=True)
        try:
            # The slow transaction takes the smaller id, the quick one commits first.
            early = await _insert(slow, "test.slow")
            late = await _insert(quick, "test.quick")
            assert early < late
            hub.wake()
            with pytest.raises(TimeoutError):
                await _take(mailbox, wait=1.0)  # held back behind the open transaction
            await slow.commit()
            hub.wake()
            got = await _take(mailbox)
            assert got == [early, late]
            third = await _insert(quick, "test.third")
            hub.wake()
            assert await _take(mailbox) == [third]
        finally:
            stop.set()
            await slow.close()
            await quick.close()
            await runner
            await pool.close()

    asyncio.run(scenario())


def test_the_python_filter_agrees_with_the_sql_filter(database_url: str) -> None:
    job, worker = str(uuid.uuid4()), str(uuid.uuid4())

    async def scenario() -> None:
        pool = await db.open_pool(database_url)
        store = EventStore(pool)
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            await _insert(conn, "job.created", "job", job, correlation="c-1")
            await _insert(conn, "job.assigned", "job", job, f'{{"worker_id": "{worker}"}}')
            await _insert(conn, "job.created", "job", actor="token:ops")
            await _insert(conn, "worker.lost", "worker", worker, actor="reconciler")
            await _insert(conn, "audit.secret.set", "audit", "db-password", actor="token:root")
        since = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
        filters = [
            EventFilter(), EventFilter(audit=True), EventFilter(job_id=job),
            EventFilter(worker_id=worker), EventFilter(types=("job.created",)),
            EventFilter(prefixes=("worker.",)), EventFilter(prefixes=("audit.",), audit=True),
            EventFilter(actor="token:ops"), EventFilter(correlation_id="c-1"),
            EventFilter(since=since), EventFilter(since=since + dt.timedelta(hours=2)),
            EventFilter(job_id=job, types=("job.assigned",), worker_id=worker),
        ]
        everything = await store.matching(EventFilter(audit=True), Position(0, 0),
                                          Position(2**62, 0), 1000)
        assert len(everything) == 5
        try:
            for wanted in filters:
                in_sql = [r["id"] for r in await store.matching(
                    wanted, Position(0, 0), Position(2**62, 0), 1000)]
                in_python = [r["id"] for r in everything if wanted.matches(r)]
                assert in_sql == in_python, wanted
        finally:
            await pool.close()

    asyncio.run(scenario())


def test_writers_notify_only_while_some_replica_watches(database_url: str) -> None:
    async def scenario() -> None:
        pool = await db.open_pool(database_url)
        store = EventStore(pool)
        listener = await psycopg.AsyncConnection.connect(database_url, autocommit=True)
        writer = await psycopg.AsyncConnection.connect(database_url, autocommit=True)
        try:
            await listener.execute("LISTEN hodei_events")

            async def heard() -> bool:
                async for _ in listener.notifies(timeout=1.0):
                    return True
                return False

            await _insert(writer, "test.unwatched")
            assert not await heard()
            await store.register_watchers("replica-a", 30)
            await _insert(writer, "test.watched")
            assert await heard()
            await store.unregister_watchers("replica-a")
            await _insert(writer, "test.unwatched-again")
            assert not await heard()
        finally:
            await listener.close()
            await writer.close()
            await pool.close()

    asyncio.run(scenario())


def test_an_event_naming_no_correlation_id_takes_its_jobs(database_url: str) -> None:
    """The dispatch path names each event's correlation id (even ''), and the trigger does not
    run for it; an insert that names none gets the job's ('' for an event of no job)."""
    job_id = uuid.uuid4()
    columns = "INSERT INTO events (type, aggregate_type, aggregate_id, payload, actor"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO jobs (id, spec, state, correlation_id) "
                     "VALUES (%s, '', 'PENDING', 'deploy-9')", (job_id,))
        try:
            rows = [conn.execute(sql, args).fetchone() for sql, args in (
                (columns + ") VALUES ('test.none', 'job', %s, '{}', 't') "
                 "RETURNING correlation_id", (str(job_id),)),
                (columns + ", correlation_id) VALUES ('test.named', 'job', %s, '{}', 't', "
                 "'other') RETURNING correlation_id", (str(job_id),)),
                (columns + ", correlation_id) VALUES ('test.empty', 'job', %s, '{}', 't', "
                 "'') RETURNING correlation_id", (str(job_id),)),
                (columns + ") VALUES ('test.worker', 'worker', %s, '{}', 't') "
                 "RETURNING correlation_id", (str(job_id),)),
                (columns + ") VALUES ('test.no_job', 'job', 'not-a-uuid', '{}', 't') "
                 "RETURNING correlation_id", ()),
            )]
            assert [r[0] if r else None for r in rows] == ["deploy-9", "other", "", "", ""]
        finally:
            conn.execute("DELETE FROM events WHERE type = ANY (%s)",
                         (["test.none", "test.named", "test.empty", "test.worker",
                           "test.no_job"],))
            conn.execute("DELETE FROM jobs WHERE id = %s", (job_id,))
