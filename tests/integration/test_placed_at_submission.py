"""A job submitted while none waits starts at once: stored assigned, sent in the same call.

Real PostgreSQL, the real dispatcher and agent sessions (their outboxes stand in for the
streams): what the statement stores, what the agent is sent, and when the job queues
instead (a job waits already, no agent has room, the job fits none, a repeated key).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
import pytest

from hodei_api.v1 import agent_pb2, jobs_pb2
from hodei_server import telemetry
from hodei_server.dispatch.dispatcher import Dispatcher
from hodei_server.dispatch.registry import AgentRegistry
from hodei_server.dispatch.session import AgentSession
from hodei_server.store import db
from hodei_server.store.jobs import JobStore

T = TypeVar("T")


def session(slots: int = 1, labels: dict[str, str] | None = None) -> AgentSession:
    return AgentSession(worker_id=uuid.uuid4(), name="w", provider="local",
                        labels=labels or {}, slots=slots, cpus=0, memory_mb=0,
                        heartbeat_ttl=60)


def run(database_url: str, sessions: list[AgentSession],
        body: Callable[[Dispatcher], Awaitable[T]]) -> T:
    async def main() -> T:
        pool = await db.open_pool(database_url, min_size=1, max_size=8)
        try:
            registry = AgentRegistry()
            for s in sessions:
                registry.add(s)
            return await body(Dispatcher(JobStore(pool), registry, "s1", 60))
        finally:
            await pool.close()

    return asyncio.run(main())


def submit(dispatcher: Dispatcher, key: str = "", **fields: Any) -> Awaitable[tuple[Any, bool]]:
    spec = jobs_pb2.JobSpec(command=["true"], **fields)
    return dispatcher.submit(spec, key, "user:test")


def sent(s: AgentSession) -> list[agent_pb2.RunJob]:
    runs = []
    while not s.outbox.empty():
        message = s.outbox.get_nowait()
        assert message is not None
        if message.HasField("run_job"):
            runs.append(message.run_job)
    return runs


def stored(url: str, job_id: uuid.UUID) -> tuple[list[Any], list[str]]:
    with psycopg.connect(url) as conn:
        attempts = conn.execute(
            "SELECT attempt, worker_id, state FROM job_attempts WHERE job_id = %s",
            (job_id,)).fetchall()
        events = conn.execute(
            "SELECT type FROM events WHERE aggregate_id = %s ORDER BY id",
            (str(job_id),)).fetchall()
    return attempts, [e[0] for e in events]


def test_a_job_submitted_to_an_idle_agent_is_assigned_and_sent(database_url: str) -> None:
    agent = session(slots=2)
    before = telemetry.PLACED_AT_SUBMISSION._value.get()
    row, created = run(database_url, [agent], lambda d: submit(d, name="now"))
    assert created
    assert (row["state"], row["attempt"], row["worker_id"]) == ("ASSIGNED", 1, agent.worker_id)
    attempts, events = stored(database_url, row["id"])
    assert attempts == [(1, agent.worker_id, "ASSIGNED")]
    assert events == ["job.created", "job.assigned"]
    runs = sent(agent)
    assert [(r.job_id, r.attempt, r.spec.name) for r in runs] == [(str(row["id"]), 1, "now")]
    assert agent.free_slots == 1
    assert telemetry.PLACED_AT_SUBMISSION._value.get() == before + 1


def test_a_job_queues_behind_one_that_waits(database_url: str) -> None:
    agent = session(labels={"os": "linux"})

    async def body(d: Dispatcher) -> tuple[Any, Any]:
        # Waits for a worker nobody has: the queue is not empty, so no job may pass it.
        waiting, _ = await submit(d, selector={"gpu": "yes"})
        later, _ = await submit(d)
        return waiting, later

    waiting, later = run(database_url, [agent], body)
    assert (waiting["state"], later["state"]) == ("PENDING", "PENDING")
    assert later["worker_id"] is None and later["attempt"] == 0
    assert stored(database_url, later["id"]) == ([], ["job.created"])
    assert sent(agent) == []


def test_a_job_waiting_out_a_backoff_does_not_hold_the_queue(database_url: str) -> None:
    agent = session()
    with psycopg.connect(database_url) as conn:
        conn.execute("INSERT INTO jobs (id, spec, state, not_before) "
                     "VALUES (%s, '\\x'::bytea, 'PENDING', now() + interval '1 hour')",
                     (uuid.uuid4(),))
    row, _ = run(database_url, [agent], lambda d: submit(d))
    assert row["state"] == "ASSIGNED"


@pytest.mark.parametrize("agents", [
    pytest.param(lambda: [], id="no agent"),
    pytest.param(lambda: [session(labels={"os": "linux"})], id="no agent the job fits"),
])
def test_a_job_no_agent_takes_queues(database_url: str,
                                     agents: Callable[[], list[AgentSession]]) -> None:
    connected = agents()
    row, created = run(database_url, connected, lambda d: submit(d, selector={"os": "mac"}))
    assert created and row["state"] == "PENDING"
    assert all(sent(s) == [] for s in connected)


def test_submissions_at_once_never_take_more_slots_than_an_agent_has(
        database_url: str) -> None:
    agent = session(slots=2)

    async def body(d: Dispatcher) -> list[Any]:
        return [row for row, _ in await asyncio.gather(*(submit(d) for _ in range(6)))]

    rows = run(database_url, [agent], body)
    assigned = [r for r in rows if r["state"] == "ASSIGNED"]
    assert 1 <= len(assigned) <= 2
    assert {r["state"] for r in rows} == {"ASSIGNED", "PENDING"}
    assert sorted(r.job_id for r in sent(agent)) == sorted(str(r["id"]) for r in assigned)
    assert agent.free_slots == 2 - len(assigned)


def test_a_repeated_idempotency_key_sends_nothing_more(database_url: str) -> None:
    agent = session(slots=4)

    async def body(d: Dispatcher) -> tuple[tuple[Any, bool], tuple[Any, bool]]:
        return await submit(d, key="once"), await submit(d, key="once")

    (first, created), (again, created_again) = run(database_url, [agent], body)
    assert created and not created_again
    assert again["id"] == first["id"] and again["state"] == "ASSIGNED"
    assert len(sent(agent)) == 1 and agent.free_slots == 3


def test_an_agent_gone_before_the_send_leaves_the_job_assigned_for_its_return(
        database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """The agent's stream closes while the statement runs: the job stays ASSIGNED to it, as
    after a claim round's assignment, and its reconnection (its Hello names no such job)
    sends it again (tests/faults/test_lost_dispatch.py)."""
    agent = session()

    async def body(d: Dispatcher) -> Any:
        store = d.jobs
        submit_to_store = store.submit

        async def then_gone(*args: Any, **kwargs: Any) -> tuple[Any, bool]:
            stored = await submit_to_store(*args, **kwargs)
            d.registry.remove(agent)
            return stored

        store.submit = then_gone  # type: ignore[method-assign]
        row, _ = await submit(d)
        return row

    row = run(database_url, [agent], body)
    assert (row["state"], row["worker_id"]) == ("ASSIGNED", agent.worker_id)
    assert stored(database_url, row["id"]) == ([(1, agent.worker_id, "ASSIGNED")],
                                               ["job.created", "job.assigned"])
    assert sent(agent) == []
    assert f"left before job {row['id']} was sent" in caplog.text
