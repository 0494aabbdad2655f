"""Jobs that wait for others, indexed jobs, template runs, and deleting jobs after their time.

A job that waits (BLOCKED), an indexed job and its indexes never enter the queue's hot
path: the dispatcher claims PENDING jobs only, and an index is PENDING only while its
indexed job has a parallelism slot for it. What moves them on is `FlowStore.advance`,
run by the reconciler leader when a job that others follow ends (`FlowsDue`) and on its
timer. `hodei_server.store.states` decides every step; this module applies them, each
fenced by the state it expects.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from hodei_api.v1 import jobs_pb2
from hodei_server.errors import Conflict, InvalidSpec
from hodei_server.store.db import Pool
from hodei_server.store.jobs import JobStore, Row, job_for_key, job_params
from hodei_server.store.signals import CancelAttempt, JobsWaiting, publish
from hodei_server.store.sqlfiles import query
from hodei_server.store.states import (
    Condition,
    IndexTally,
    JobState,
    Waited,
    after_dependencies,
    after_indexes,
)

log = logging.getLogger(__name__)

INDEX_ENV = "HODEI_JOB_INDEX"
COMPLETIONS_ENV = "HODEI_JOB_COMPLETIONS"
_PAGE = 500
# Rounds of one advance: an ending can unblock jobs whose own ending unblocks others.
_MAX_ROUNDS = 20
_CONDITIONS = {
    jobs_pb2.DEPENDENCY_CONDITION_UNSPECIFIED: Condition.SUCCEEDED,
    jobs_pb2.DEPENDENCY_CONDITION_SUCCEEDED: Condition.SUCCEEDED,
    jobs_pb2.DEPENDENCY_CONDITION_FINISHED: Condition.FINISHED,
    jobs_pb2.DEPENDENCY_CONDITION_FAILED: Condition.FAILED,
}
_ACTIONS = {
    jobs_pb2.FAILURE_ACTION_FAIL_JOB: "fail_job",
    jobs_pb2.FAILURE_ACTION_FAIL_INDEX: "fail_index",
    jobs_pb2.FAILURE_ACTION_IGNORE: "ignore",
    jobs_pb2.FAILURE_ACTION_COUNT: "count",
}


@dataclass(frozen=True, slots=True)
class RunOrigin:
    """The template a job is a run of, and with what."""

    template_id: uuid.UUID
    template_name: str
    version: int
    parameters: dict[str, str]
    scheduled_at: dt.datetime | None = None


@dataclass(slots=True)
class Progress:
    """What one `advance` did: steps taken, and signals for the agents of cancelled indexes
    (already published; the caller's own agents are its to tell)."""

    steps: int = 0
    signals: list[CancelAttempt] = field(default_factory=list)


def needs_flow(spec: jobs_pb2.JobSpec) -> bool:
    """Whether a spec asks for more than a plain job (the fast path of `JobStore.submit`)."""
    return bool(spec.completions or spec.after or spec.failure_policy
                or spec.HasField("ttl_after_finished_seconds"))


def dependencies(spec: jobs_pb2.JobSpec) -> list[tuple[uuid.UUID, Condition]]:
    """The jobs `spec` waits for, and on what (its ids were validated)."""
    return [(uuid.UUID(dep.job_id), _CONDITIONS[dep.condition]) for dep in spec.after]


def index_spec(spec: jobs_pb2.JobSpec, index: int) -> jobs_pb2.JobSpec:
    """What index `index` of an indexed job runs: its spec, with its index in the env."""
    child = jobs_pb2.JobSpec()
    child.CopyFrom(spec)
    for name in ("completions", "parallelism", "after", "ttl_after_finished_seconds"):
        child.ClearField(name)  # type: ignore[arg-type]
    child.name = f"{spec.name}[{index}]"
    child.env[INDEX_ENV] = str(index)
    child.env[COMPLETIONS_ENV] = str(spec.completions)
    return child


def stored_failure_policy(spec: jobs_pb2.JobSpec) -> list[dict[str, Any]]:
    return [{"action": _ACTIONS[rule.action], "exit_codes": sorted(set(rule.exit_codes)),
             "not_in": rule.not_in} for rule in spec.failure_policy]


class FlowStore:
    """Submits jobs that need more than the queue, and moves them on as jobs end."""

    def __init__(self, pool: Pool, jobs: JobStore) -> None:
        self.pool = pool
        self.jobs = jobs

    async def submit(
        self, spec: jobs_pb2.JobSpec, idempotency_key: str, actor: str, submitted_by: str,
        run: RunOrigin | None = None, correlation_id: str = "",
    ) -> tuple[Row, bool]:
        """Store a job (BLOCKED, RUNNING with its indexes, or PENDING): (row, created)."""
        async with self.pool.transaction() as conn:
            return await self.submit_in(conn, spec, idempotency_key, actor, submitted_by, run,
                                        correlation_id)

    async def submit_many(
        self, entries: Sequence[tuple[jobs_pb2.JobSpec, str, str]], actor: str,
        submitted_by: str,
    ) -> list[tuple[uuid.UUID, bool]]:
        """Many jobs (spec, idempotency key, correlation id) in one transaction: (id,
        created) for each, in
        order. The plain ones are one statement; those that need more take `submit_in`."""
        plain = [i for i, (spec, _, _) in enumerate(entries) if not needs_flow(spec)]
        results: list[tuple[uuid.UUID, bool] | None] = [None] * len(entries)
        async with self.pool.transaction() as conn:
            stored = await self.jobs.submit_many_in(
                conn, [entries[i] for i in plain], actor, submitted_by)
            for i, result in zip(plain, stored, strict=True):
                results[i] = result
            for i, (spec, key, correlation) in enumerate(entries):
                if results[i] is None:
                    try:
                        row, created = await self.submit_in(
                            conn, spec, key, actor, submitted_by, correlation_id=correlation)
                    except (InvalidSpec, Conflict) as exc:
                        raise type(exc)(f"jobs[{i}]: {exc.message}") from None
                    results[i] = (row["id"], created)
        return [r for r in results if r is not None]

    async def submit_in(
        self, conn: AsyncConnection[Any], spec: jobs_pb2.JobSpec, idempotency_key: str,
        actor: str, submitted_by: str, run: RunOrigin | None = None, correlation_id: str = "",
    ) -> tuple[Row, bool]:
        """`submit` in the transaction of `conn`."""
        if idempotency_key:
            cur = await conn.execute(query("get_job_by_idempotency_key"),
                                     {"idempotency_key": idempotency_key})
            if (existing := await cur.fetchone()) is not None:
                return existing, False
        indexed = spec.completions > 0
        waited = await self._lock_dependencies(conn, dependencies(spec))
        verdict = after_dependencies(waited, indexed=indexed)
        if verdict.state is JobState.CANCELLED:
            raise Conflict(verdict.reason)
        params = self._job_params(spec, idempotency_key, actor, submitted_by, run)
        params["state"] = verdict.state.value
        params["reason"] = verdict.reason
        params["correlation_id"] = correlation_id or idempotency_key
        cur = await conn.execute(query("insert_flow_job"), params)
        row = await cur.fetchone()
        if row is None:  # the same key, submitted meanwhile
            return await job_for_key(conn, idempotency_key), False
        if waited:
            await conn.execute(query("insert_dependencies"), {
                "job_id": row["id"], "depends_on": [uuid.UUID(w.job_id) for w in waited],
                "conditions": [w.condition.value for w in waited]})
        if verdict.state is JobState.RUNNING:
            await self._insert_indexes(conn, row["id"], spec, actor)
        if verdict.state is not JobState.BLOCKED:
            await publish(conn, JobsWaiting())
        return row, True

    async def _lock_dependencies(
        self, conn: AsyncConnection[Any], deps: Sequence[tuple[uuid.UUID, Condition]]
    ) -> list[Waited]:
        """The dependencies with the state of each, locked (their ending then wakes the
        leader); InvalidSpec naming one that does not exist."""
        if not deps:
            return []
        cur = await conn.execute(query("lock_dependencies"), {"ids": [d[0] for d in deps]})
        states = {r["id"]: JobState(r["state"]) for r in await cur.fetchall()}
        for job_id, _ in deps:
            if job_id not in states:
                raise InvalidSpec(f"after: job {job_id} does not exist (a job waits only for "
                                  "jobs submitted before it)")
        return [Waited(str(job_id), condition, states[job_id]) for job_id, condition in deps]

    @staticmethod
    def _job_params(
        spec: jobs_pb2.JobSpec, idempotency_key: str, actor: str, submitted_by: str,
        run: RunOrigin | None,
    ) -> dict[str, Any]:
        ttl = spec.ttl_after_finished_seconds if spec.HasField(
            "ttl_after_finished_seconds") else None
        return job_params(spec, idempotency_key, actor, submitted_by) | {
            "completions": spec.completions,
            "parallelism": spec.parallelism or spec.completions,
            "failure_policy": Jsonb(stored_failure_policy(spec)),
            "has_followups": run is not None,
            "ttl": ttl,
            "template_id": run.template_id if run else None,
            "template_name": run.template_name if run else None,
            "template_version": run.version if run else None,
            "parameters": Jsonb(run.parameters) if run else None,
            "scheduled_at": run.scheduled_at if run else None,
            "after": Jsonb([{"job_id": d.job_id, "condition": _CONDITIONS[d.condition].value}
                            for d in spec.after]),
        }

    async def _insert_indexes(
        self, conn: AsyncConnection[Any], parent_id: uuid.UUID, spec: jobs_pb2.JobSpec,
        actor: str,
    ) -> None:
        count = spec.completions
        await conn.execute(query("insert_indexes"), {
            "parent_id": parent_id,
            "ids": [uuid.uuid4() for _ in range(count)],
            "specs": [index_spec(spec, i).SerializeToString(deterministic=True)
                      for i in range(count)],
            "indexes": list(range(count)),
            "parallelism": spec.parallelism or count,
            "actor": actor,
        })

    # ---- moving jobs on ------------------------------------------------------------------

    async def advance(self, actor: str, origin: str) -> Progress:
        """Move on every job that waits or fans out, as far as the jobs it follows allow."""
        progress = Progress()
        for _ in range(_MAX_ROUNDS):
            steps = (await self._blocked(actor) + await self._indexed(actor, origin, progress)
                     + await self._template_runs(actor))
            progress.steps += steps
            if not steps:
                break
        return progress

    async def _blocked(self, actor: str) -> int:
        steps = 0
        after: tuple[dt.datetime, uuid.UUID] = (dt.datetime.min.replace(tzinfo=dt.UTC),
                                                uuid.UUID(int=0))
        while True:
            async with self.pool.connection() as conn:
                cur = await conn.execute(query("blocked_jobs"), {
                    "after_created_at": after[0], "after_id": after[1], "limit": _PAGE})
                page = await cur.fetchall()
                if not page:
                    return steps
                cur = await conn.execute(query("dependencies_of"),
                                         {"ids": [r["id"] for r in page]})
                waited: dict[uuid.UUID, list[Waited]] = {}
                for dep in await cur.fetchall():
                    waited.setdefault(dep["job_id"], []).append(Waited(
                        str(dep["depends_on"]), Condition(dep["condition"]),
                        JobState(dep["state"])))
            for row in page:
                steps += await self._decide_blocked(row, waited.get(row["id"], []), actor)
            last = page[-1]
            after = (last["created_at"], last["id"])

    async def _decide_blocked(self, row: Row, waited: list[Waited], actor: str) -> int:
        verdict = after_dependencies(waited, indexed=row["completions"] > 0)
        async with self.pool.transaction() as conn:
            if verdict.state is JobState.BLOCKED:
                await conn.execute(query("set_blocked_reason"),
                                   {"id": row["id"], "reason": verdict.reason})
                return 0
            cur = await conn.execute(query("unblock_job"), {
                "id": row["id"], "state": verdict.state.value, "reason": verdict.reason,
                "actor": actor})
            if await cur.fetchone() is None:
                return 0  # cancelled meanwhile
            if verdict.state is JobState.RUNNING:
                spec = jobs_pb2.JobSpec.FromString(row["spec"])
                await self._insert_indexes(conn, row["id"], spec, actor)
                await publish(conn, JobsWaiting())
        log.info("job %s: %s%s", row["id"], verdict.state.value,
                 f" ({verdict.reason})" if verdict.reason else "")
        return 1

    async def _indexed(self, actor: str, origin: str, progress: Progress) -> int:
        async with self.pool.connection() as conn:
            cur = await conn.execute(query("running_indexed_jobs"))
            parents = [r["id"] for r in await cur.fetchall()]
        steps = 0
        for parent_id in parents:
            async with self.pool.transaction() as conn:
                steps += await self._decide_indexed(conn, parent_id, actor, origin, progress)
        return steps

    async def _decide_indexed(
        self, conn: AsyncConnection[Any], parent_id: uuid.UUID, actor: str, origin: str,
        progress: Progress,
    ) -> int:
        cur = await conn.execute(query("lock_indexed_job"), {"id": parent_id})
        parent = await cur.fetchone()
        if parent is None:
            return 0
        cur = await conn.execute(query("index_tally"), {"id": parent_id})
        counts = await cur.fetchone()
        assert counts is not None  # an aggregate always has its row
        verdict = after_indexes(IndexTally(
            parent["completions"], parent["parallelism"] or parent["completions"],
            counts["blocked"], counts["queued"], counts["succeeded"], counts["failed"],
            counts["failing_job"]))
        if verdict.state is JobState.RUNNING:
            if not verdict.start:
                return 0
            await conn.execute(query("start_indexes"), {
                "parent_id": parent_id, "count": verdict.start, "actor": actor})
            return 1
        await conn.execute(query("finish_indexed_job"), {
            "id": parent_id, "state": verdict.state.value, "reason": verdict.reason,
            "actor": actor})
        if counts["blocked"] or counts["queued"]:
            progress.signals += await self.jobs.cancel_indexes(
                conn, parent_id, f"its indexed job {verdict.state.value}: {verdict.reason}",
                actor, origin)
        log.info("indexed job %s: %s%s", parent_id, verdict.state.value,
                 f" ({verdict.reason})" if verdict.reason else "")
        return 1

    async def _template_runs(self, actor: str) -> int:
        """Ended runs into their template's history; then each template's history limits."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(query("close_template_runs"))
            templates = sorted({r["template_id"] for r in await cur.fetchall()})
            if not templates:
                return 0
            cur = await conn.execute(query("history_limits"), {"ids": templates})
            for limits in await cur.fetchall():
                cur = await conn.execute(query("prune_template_history"), {
                    "template_id": limits["id"], "keep_succeeded": limits["keep_succeeded"],
                    "keep_failed": limits["keep_failed"], "actor": actor})
                deleted = len(await cur.fetchall())
                if deleted:
                    log.info("template %s: %d finished runs deleted (history limit)",
                             limits["id"], deleted)
        return len(templates)

    async def prune_expired(self, actor: str, limit: int = _PAGE) -> int:
        """Delete up to `limit` jobs whose ttl_after_finished ran out; how many were."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(query("prune_expired_jobs"),
                                     {"limit": limit, "actor": actor})
            deleted = len(await cur.fetchall())
        if deleted:
            log.info("%d jobs deleted: their ttl_after_finished ran out", deleted)
        return deleted

    async def delete_finished(self, job_id: uuid.UUID, actor: str) -> bool:
        """Delete a finished job with its attempts and output; False if it is not finished
        or a job waiting on it still needs it."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(query("delete_job"), {"id": job_id, "actor": actor})
            return bool(await cur.fetchall())

    async def prune_retained(self, seconds: float, actor: str, limit: int = _PAGE) -> int:
        """Delete up to `limit` jobs finished more than `seconds` ago; how many were."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(query("prune_retained_jobs"),
                                     {"seconds": seconds, "limit": limit, "actor": actor})
            deleted = len(await cur.fetchall())
        if deleted:
            log.info("%d finished jobs deleted: older than the job retention", deleted)
        return deleted

    async def index_counts(self, job_id: uuid.UUID) -> Row:
        async with self.pool.connection() as conn:
            cur = await conn.execute(query("index_counts"), {"id": job_id})
            row = await cur.fetchone()
        assert row is not None  # an aggregate always has its row
        return row
