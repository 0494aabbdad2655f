"""Jobs, their attempts and their output in PostgreSQL."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from hodei_api.v1 import jobs_pb2
from hodei_server.errors import Conflict, InvalidSpec, NotFound
from hodei_server.store.db import Pool, atomic
from hodei_server.store.signals import (
    CancelAttempt,
    FlowsDue,
    JobChanged,
    JobsWaiting,
    publish,
)
from hodei_server.store.sqlfiles import query
from hodei_server.store.states import (
    FINAL_STATES,
    NEVER_RETRIED,
    RETRYABLE,
    Decision,
    FailureAction,
    FailureRule,
    JobState,
    RetryPolicy,
    after_attempt,
    failure_action,
    sources_of,
)

Row = dict[str, Any]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Claimed:
    """A pending job, locked for this dispatch round."""

    id: uuid.UUID
    spec_bytes: bytes
    selector: dict[str, str]
    cpus: float
    memory_mb: int


@dataclass(frozen=True, slots=True)
class Assignment:
    job_id: uuid.UUID
    attempt: int
    worker_id: uuid.UUID
    spec_bytes: bytes


@dataclass(frozen=True, slots=True)
class Ending:
    """How an attempt ended, as its agent reported it (`JobStore.finish_many`)."""

    job_id: uuid.UUID
    attempt: int
    outcome: JobState
    exit_code: int | None
    reason: str
    # The agent reported the attempt started in the same batch: record that in this write.
    started: bool = False
    pid: int = 0


class Deferred(Generic[T]):
    """What a statement decided, read later: a batch of statements runs (and commits)
    first, then its caller reads each outcome and acts on it."""

    __slots__ = ("_convert", "_cursor", "_value")

    def __init__(
        self, cursor: Any = None, convert: Callable[[Row | None], T] | None = None,
        value: T | None = None,
    ) -> None:
        self._cursor = cursor
        self._convert = convert
        self._value = value

    @classmethod
    def ready(cls, value: T) -> Deferred[T]:
        return cls(value=value)

    async def result(self) -> T:
        if self._cursor is None or self._convert is None:
            return self._value  # type: ignore[return-value]
        return self._convert(await self._cursor.fetchone())


def encode_page_token(created_at: dt.datetime, job_id: uuid.UUID) -> str:
    raw = f"{created_at.isoformat()}|{job_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str) -> tuple[dt.datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        created, job_id = raw.split("|", 1)
        return dt.datetime.fromisoformat(created), uuid.UUID(job_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidSpec("page_token is not one this server issued") from None


def failure_rules(stored: list[dict[str, Any]]) -> list[FailureRule]:
    """A job's failure policy as stored (jsonb) as rules for the state machine."""
    return [FailureRule(FailureAction(rule["action"]), frozenset(rule["exit_codes"]),
                        bool(rule.get("not_in"))) for rule in stored]


def job_params(
    spec: jobs_pb2.JobSpec, idempotency_key: str, actor: str, submitted_by: str
) -> dict[str, Any]:
    """The columns every new job stores, from its spec (a new id included)."""
    return {
        "id": uuid.uuid4(),
        "name": spec.name,
        "spec": spec.SerializeToString(deterministic=True),
        "max_attempts": max(1, spec.max_attempts),
        "idempotency_key": idempotency_key or None,
        "labels": Jsonb(dict(spec.labels)),
        "selector": Jsonb(dict(spec.selector)),
        "cpus": spec.resources.cpus,
        "memory_mb": spec.resources.memory_mb,
        "timeout_seconds": spec.timeout_seconds,
        "retry_on": list(spec.retry.on) or ["lost"],
        "backoff_seconds": spec.retry.backoff_seconds or 1.0,
        "max_backoff_seconds": spec.retry.max_backoff_seconds or 60.0,
        "actor": actor,
        "submitted_by": submitted_by,
    }


async def job_for_key(conn: AsyncConnection[Any], idempotency_key: str) -> Row:
    """The job stored under an idempotency key whose insert just lost the race for it;
    Conflict when it was deleted between the two statements."""
    cur = await conn.execute(query("get_job_by_idempotency_key"),
                             {"idempotency_key": idempotency_key})
    row = await cur.fetchone()
    if row is None:
        raise Conflict("the job for that idempotency key vanished; submit again")
    return row


class JobStore:
    """Every job-related read and write; transitions are fenced in SQL."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    async def submit(
        self, spec: jobs_pb2.JobSpec, idempotency_key: str, actor: str, submitted_by: str = "",
        correlation_id: str = "",
        worker_id: uuid.UUID | None = None, job_id: uuid.UUID | None = None,
    ) -> tuple[Row, bool]:
        """Store a PENDING job: (row, created). Its events carry `correlation_id`, else the
        idempotency key. Given `worker_id`, the job is stored ASSIGNED to it instead when no
        job waits (the row says which): the caller has that worker's slot for it. `job_id`:
        the new job's id, when the caller named it already (else a new one)."""
        params = job_params(spec, idempotency_key, actor, submitted_by)
        if job_id is not None:
            params["id"] = job_id
        params["correlation_id"] = correlation_id or idempotency_key
        params["worker_id"] = worker_id
        async with self.pool.connection() as conn:
            cur = await conn.execute(query("insert_job"), params)
            row = await cur.fetchone()
            if row is None:
                return await job_for_key(conn, idempotency_key), False
        return row, True

    async def submit_many_in(
        self, conn: AsyncConnection[Any], entries: Sequence[tuple[jobs_pb2.JobSpec, str, str]],
        actor: str, submitted_by: str = "",
    ) -> list[tuple[uuid.UUID, bool]]:
        """Plain jobs (spec, idempotency key, correlation id — the key when empty), in one
        statement and one wake-up, in the
        transaction of `conn`: (id, created) for each, in order. A key seen before (in the
        table or earlier in `entries`) gives that job's id, not created."""
        if not entries:
            return []
        ids = [uuid.uuid4() for _ in entries]
        specs = [spec for spec, _, _ in entries]
        keys = [key or None for _, key, _ in entries]
        cur = await conn.execute(query("insert_jobs"), {
            "ids": ids,
            "names": [spec.name for spec in specs],
            "specs": [spec.SerializeToString(deterministic=True) for spec in specs],
            "max_attempts": [max(1, spec.max_attempts) for spec in specs],
            "idempotency_keys": keys,
            "labels": [json.dumps(dict(spec.labels)) for spec in specs],
            "selectors": [json.dumps(dict(spec.selector)) for spec in specs],
            "cpus": [spec.resources.cpus for spec in specs],
            "memory_mb": [spec.resources.memory_mb for spec in specs],
            "timeout_seconds": [spec.timeout_seconds for spec in specs],
            "retry_on": [",".join(spec.retry.on) or "lost" for spec in specs],
            "backoff_seconds": [spec.retry.backoff_seconds or 1.0 for spec in specs],
            "max_backoff_seconds": [spec.retry.max_backoff_seconds or 60.0 for spec in specs],
            "correlation_ids": [correlation or key for _, key, correlation in entries],
            "actor": actor,
            "submitted_by": submitted_by,
        })
        inserted = {row["id"] for row in await cur.fetchall()}
        if len(inserted) == len(ids):
            return [(job_id, True) for job_id in ids]
        existing: dict[str, uuid.UUID] = {}
        missing = [key for job_id, key in zip(ids, keys, strict=True)
                   if job_id not in inserted and key is not None]
        cur = await conn.execute(query("get_jobs_by_idempotency_keys"), {"keys": missing})
        existing = {row["idempotency_key"]: row["id"] for row in await cur.fetchall()}
        result = []
        for job_id, key in zip(ids, keys, strict=True):
            if job_id in inserted:
                result.append((job_id, True))
            elif key in existing:
                result.append((existing[key], False))
            else:  # deleted between the two statements
                raise Conflict(f"the job for idempotency key {key!r} vanished; submit again")
        return result

    async def get(self, job_id: uuid.UUID) -> tuple[Row, list[Row]]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(query("get_job"), {"id": job_id})
            row = await cur.fetchone()
            if row is None:
                raise NotFound(f"job {job_id} not found")
            cur = await conn.execute(query("get_job_attempts"), {"id": job_id})
            return row, await cur.fetchall()

    async def state_of(self, job_id: uuid.UUID) -> JobState:
        async with self.pool.connection() as conn:
            cur = await conn.execute(query("get_job_state"), {"id": job_id})
            row = await cur.fetchone()
        if row is None:
            raise NotFound(f"job {job_id} not found")
        return JobState(row["state"])

    async def claim_and_assign(
        self,
        candidates: list[dict[str, Any]],
        limit: int,
        choose: Callable[[list[Claimed]], list[tuple[uuid.UUID, uuid.UUID]]],
        actor: str,
    ) -> list[Assignment]:
        """Pending jobs some candidate fits, placed by `choose`, assigned: two statements,
        no transaction. The claim keeps no lock (SKIP LOCKED only keeps concurrent rounds
        apart); the assignment is fenced on the job being PENDING still, so a job another
        replica assigned, or cancelled, meanwhile is left out, and each job is assigned once."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                query("claim_pending_jobs"), {"candidates": Jsonb(candidates), "limit": limit}
            )
            claimed = [
                Claimed(r["id"], r["spec"], r["selector"], r["cpus"], r["memory_mb"])
                for r in await cur.fetchall()
            ]
            if not claimed:
                return []
            placements = choose(claimed)
            if not placements:
                return []
            cur = await conn.execute(query("assign_jobs"), {
                "ids": [job_id for job_id, _ in placements],
                "worker_ids": [worker_id for _, worker_id in placements],
                "actor": actor,
            })
            attempts = {row["id"]: row["attempt"] for row in await cur.fetchall()}
        specs = {c.id: c.spec_bytes for c in claimed}
        # In the order `choose` placed them (the queue's), whatever order the update took.
        return [Assignment(job_id, attempts[job_id], worker_id, specs[job_id])
                for job_id, worker_id in placements if job_id in attempts]

    async def mark_running_many(
        self, conn: AsyncConnection[Any], worker_id: uuid.UUID,
        attempts: Sequence[tuple[uuid.UUID, int, int]],
    ) -> dict[tuple[uuid.UUID, int], tuple[bool, JobState | None]]:
        """`mark_running` for many (job id, attempt, pid) of one worker, one statement:
        (job id, attempt) -> (marked, the job's state when it was not: None for no job)."""
        cur = await conn.execute(query("mark_running_many"), {
            "ids": [a[0] for a in attempts], "attempts": [a[1] for a in attempts],
            "pids": [a[2] for a in attempts], "worker_id": worker_id,
            "actor": f"worker:{worker_id}",
        })
        result: dict[tuple[uuid.UUID, int], tuple[bool, JobState | None]] = {}
        for row in await cur.fetchall():
            key = (row["id"], row["attempt"])
            if row["marked"]:
                result[key] = (True, JobState.RUNNING)
            elif key not in result:
                result[key] = (False, None if row["state"] is None else JobState(row["state"]))
        return result

    async def finish_many(
        self, conn: AsyncConnection[Any], worker_id: uuid.UUID, endings: Sequence[Ending],
        actor: str = "",
    ) -> set[tuple[uuid.UUID, int]]:
        """Record many attempts of one worker that ended in a way no policy looks at
        (NEVER_RETRIED), one statement: the (job id, attempt) recorded; the others were
        refused by the fence (stale or duplicate reports)."""
        decisions = [after_attempt(e.outcome, e.attempt, e.attempt, RetryPolicy())
                     for e in endings]
        cur = await conn.execute(query("finish_many"), {
            "ids": [e.job_id for e in endings],
            "attempts": [e.attempt for e in endings],
            "states": [d.state.value for d in decisions],
            "exit_codes": [e.exit_code for e in endings],
            "reasons": [e.reason for e in endings],
            "finals": [d.state in FINAL_STATES for d in decisions],
            "fails_parent": [d.fails_parent for d in decisions],
            "from_states": [",".join(sources_of(e.outcome)) for e in endings],
            "started": [e.started for e in endings],
            "pids": [e.pid for e in endings],
            "worker_id": worker_id,
            "actor": actor or f"worker:{worker_id}",
        })
        return {(row["id"], row["attempt"]) for row in await cur.fetchall()}

    async def mark_running(
        self, conn: AsyncConnection[Any], job_id: uuid.UUID, attempt: int,
        worker_id: uuid.UUID, pid: int,
    ) -> bool:
        """The agent started the attempt: RUNNING, if it is still its own and ASSIGNED."""
        marked = await self.mark_running_many(conn, worker_id, [(job_id, attempt, pid)])
        return marked[(job_id, attempt)][0]

    async def state_in(self, conn: AsyncConnection[Any], job_id: uuid.UUID) -> JobState | None:
        cur = await conn.execute(query("get_job_state"), {"id": job_id})
        row = await cur.fetchone()
        return None if row is None else JobState(row["state"])

    async def finish(
        self,
        conn: AsyncConnection[Any],
        job_id: uuid.UUID,
        attempt: int,
        worker_id: uuid.UUID,
        outcome: JobState,
        exit_code: int | None,
        reason: str,
        actor: str,
        *,
        unstarted: bool = False,
    ) -> JobState | None:
        """`finish_deferred`, its result awaited."""
        if outcome in NEVER_RETRIED:
            recorded = await self.finish_many(conn, worker_id, [
                Ending(job_id, attempt, outcome, exit_code, reason)], actor)
            return outcome if (job_id, attempt) in recorded else None
        deferred = await self.finish_deferred(conn, job_id, attempt, worker_id, outcome,
                                              exit_code, reason, actor, unstarted=unstarted)
        return await deferred.result()

    async def finish_deferred(
        self,
        conn: AsyncConnection[Any],
        job_id: uuid.UUID,
        attempt: int,
        worker_id: uuid.UUID,
        outcome: JobState,
        exit_code: int | None,
        reason: str,
        actor: str,
        *,
        unstarted: bool = False,
    ) -> Deferred[JobState | None]:
        """Record how an attempt ended; the retry policy decides what the job does next.

        `unstarted`: the attempt may never have run (handed back by a draining agent,
        unknown to a reconnecting one): if it was indeed never reported running, it is
        requeued without spending the job's attempt budget.
        Its result is the job's new state, or None when the report is not about the job's
        current attempt on that worker (stale or duplicate: refused by the fence).
        """
        if outcome in NEVER_RETRIED:
            # The common case needs no look at the job's policy: one statement, whose
            # WHERE clause is the whole fence.
            decision = after_attempt(outcome, attempt, attempt, RetryPolicy())
            return await self._finish_job(conn, job_id, attempt, worker_id, outcome, exit_code,
                                          reason, actor, decision, 0)
        async with atomic(conn):  # the row lock lasts until the update
            cur = await conn.execute(query("lock_job_for_finish"), {"id": job_id})
            row = await cur.fetchone()
            if (
                row is None
                or row["attempt"] != attempt
                or row["worker_id"] != worker_id
                or row["state"] not in sources_of(outcome)
            ):
                return Deferred.ready(None)
            policy = RetryPolicy(
                on=frozenset(RETRYABLE[o] for o in row["retry_on"] if o in RETRYABLE),
                backoff_seconds=row["backoff_seconds"],
                max_backoff_seconds=row["max_backoff_seconds"],
            )
            # Only an attempt the agent never reported running is handed back for free.
            refund = 0
            if unstarted and row["state"] == JobState.ASSIGNED.value:
                refund = 1
                policy = RetryPolicy(policy.on | {JobState.LOST}, 0.0, 0.0)
            action = failure_action(failure_rules(row["failure_policy"]), exit_code)
            decision = after_attempt(outcome, attempt, row["max_attempts"] + refund, policy,
                                     action=action)
            if action is not None and decision.state is not JobState.PENDING:
                verdict = f"exit code {exit_code}: failure policy {action.value}"
                reason = f"{reason}; {verdict}" if reason else verdict
            return await self._finish_job(conn, job_id, attempt, worker_id, outcome, exit_code,
                                          reason, actor, decision, refund + decision.refund)

    async def _finish_job(
        self, conn: AsyncConnection[Any], job_id: uuid.UUID, attempt: int,
        worker_id: uuid.UUID, outcome: JobState, exit_code: int | None, reason: str,
        actor: str, decision: Decision, refund: int,
    ) -> Deferred[JobState | None]:
        cur = await conn.execute(
            query("finish_job"),
            {
                "id": job_id,
                "attempt": attempt,
                "worker_id": worker_id,
                "state": decision.state.value,
                "attempt_state": outcome.value,
                "final": decision.state in FINAL_STATES,
                "exit_code": exit_code,
                "reason": reason,
                "delay": decision.delay_seconds,
                "refund": refund,
                "fails_parent": decision.fails_parent,
                "from_states": sources_of(outcome),
                "actor": actor,
            },
        )
        state = decision.state
        return Deferred(cur, lambda row: None if row is None else state)

    async def retry(self, job_id: uuid.UUID, actor: str) -> None:
        """Run a finished job again as a new attempt."""
        row, _ = await self.get(job_id)
        if row["completions"] or row["parent_id"] is not None:
            raise Conflict(f"job {job_id} is an indexed job or one of its indexes: its "
                           "indexes are retried by its retry policy; submit it again")
        async with self.pool.transaction() as conn:
            cur = await conn.execute(query("retry_finished_job"), {"id": job_id, "actor": actor})
            if await cur.fetchone() is not None:
                await publish(conn, JobsWaiting(), JobChanged(str(job_id)))
                return
            state = await self.state_in(conn, job_id)
        if state is None:
            raise NotFound(f"job {job_id} not found")
        raise Conflict(f"job {job_id} is {state.value}; only a finished job can be retried")

    async def cancel(
        self, job_id: uuid.UUID, reason: str, actor: str, origin: str = ""
    ) -> tuple[bool, list[CancelAttempt]]:
        """Cancel a job: (changed, the signals to the agents of its running attempts).

        A job has one running attempt at most; an indexed job, one per running index.
        The signals are published for the other replicas; `origin`, the replica asked to
        cancel, delivers them to its own agents itself."""
        async with self.pool.transaction() as conn:
            return await self.cancel_in(conn, job_id, reason, actor, origin)

    async def cancel_in(
        self, conn: AsyncConnection[Any], job_id: uuid.UUID, reason: str, actor: str,
        origin: str = "",
    ) -> tuple[bool, list[CancelAttempt]]:
        """`cancel` in the transaction of `conn`."""
        params = {"id": job_id, "reason": reason, "actor": actor}
        cur = await conn.execute(query("cancel_pending_job"), params)
        if await cur.fetchone() is not None:
            # The leader looks at what follows it (dependents, its indexed job).
            await publish(conn, JobChanged(str(job_id)), FlowsDue())
            return True, []
        cur = await conn.execute(query("cancel_waiting_job"), params)
        waiting = await cur.fetchone()
        if waiting is not None:
            signals: list[CancelAttempt] = []
            if waiting["completions"]:
                signals = await self.cancel_indexes(conn, job_id, f"{reason} (its indexed "
                                                    "job was cancelled)", actor, origin)
            await publish(conn, JobChanged(str(job_id)), FlowsDue())
            return True, signals
        signal = await self._request_cancel(conn, job_id, reason, actor, origin)
        if signal is not None:
            return True, [signal]
        cur = await conn.execute(query("get_job_state"), {"id": job_id})
        if await cur.fetchone() is None:
            raise NotFound(f"job {job_id} not found")
        return False, []

    async def _request_cancel(
        self, conn: AsyncConnection[Any], job_id: uuid.UUID, reason: str, actor: str,
        origin: str,
    ) -> CancelAttempt | None:
        cur = await conn.execute(query("request_cancel"),
                                 {"id": job_id, "reason": reason, "actor": actor})
        row = await cur.fetchone()
        if row is None:
            return None
        signal = CancelAttempt(row["id"], row["attempt"], row["worker_id"], reason, origin)
        await publish(conn, signal)
        return signal

    async def cancel_indexes(
        self, conn: AsyncConnection[Any], parent_id: uuid.UUID, reason: str, actor: str,
        origin: str,
    ) -> list[CancelAttempt]:
        """Cancel every index of an indexed job that has not ended: those not started at
        once, the running ones through their agents (the signals returned)."""
        params = {"parent_id": parent_id, "reason": reason, "actor": actor}
        cur = await conn.execute(query("cancel_waiting_indexes"), params)
        waiting = await cur.fetchall()
        if waiting:
            await publish(conn, *(JobChanged(str(r["id"])) for r in waiting))
        cur = await conn.execute(query("active_indexes_of"), params)
        signals = []
        for row in await cur.fetchall():
            signal = await self._request_cancel(conn, row["id"], reason, actor, origin)
            if signal is not None:
                signals.append(signal)
        return signals

    async def store_chunks(self, conn: AsyncConnection[Any], rows: list[dict[str, Any]]) -> None:
        """Insert output chunks idempotently (fenced by attempt and worker)."""
        async with conn.cursor() as cur:
            await cur.executemany(query("insert_log_chunk"), rows)
        await publish(conn, *(JobChanged(job_id)
                              for job_id in sorted({str(r["job_id"]) for r in rows})))

    async def read_chunks(
        self, job_id: uuid.UUID, after_attempt: int, after_seq: int, limit: int = 512
    ) -> list[Row]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                query("read_log_chunks"),
                {"job_id": job_id, "after_attempt": after_attempt, "after_seq": after_seq,
                 "limit": limit},
            )
            return await cur.fetchall()

    async def count_by_state(self) -> dict[str, int]:
        """How many jobs are in each state (states with none left out)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(query("count_jobs_by_state"))
            return {row["state"]: row["jobs"] for row in await cur.fetchall()}

    async def read_chunks_back(
        self, job_id: uuid.UUID, before_attempt: int, before_seq: int, limit: int = 64
    ) -> list[Row]:
        """Chunks strictly before (before_attempt, before_seq), newest first."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                query("read_log_chunks_back"),
                {"job_id": job_id, "before_attempt": before_attempt,
                 "before_seq": before_seq, "limit": limit},
            )
            return await cur.fetchall()

    async def active_jobs_of(self, worker_ids: list[uuid.UUID]) -> list[Row]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(query("active_jobs_of_workers"), {"worker_ids": worker_ids})
            return await cur.fetchall()

    async def assigned_specs(self, worker_id: uuid.UUID,
                             job_ids: list[uuid.UUID]) -> dict[uuid.UUID, bytes]:
        """The specs of those jobs still assigned to `worker_id` and not started."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(query("assigned_specs"),
                                     {"ids": job_ids, "worker_id": worker_id})
            return {row["id"]: bytes(row["spec"]) for row in await cur.fetchall()}

    async def pending_demand(self, limit: int = 10_000) -> list[Row]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(query("pending_demand"), {"limit": limit})
            return await cur.fetchall()
