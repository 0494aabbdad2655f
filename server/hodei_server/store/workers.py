"""Workers and their bootstrap tokens in PostgreSQL."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import uuid
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from hodei_api.v1 import workers_pb2
from hodei_server.errors import Conflict, NotFound, Unauthenticated
from hodei_server.store.db import Pool
from hodei_server.store.jobs import Deferred, JobStore
from hodei_server.store.signals import DrainWorker, publish
from hodei_server.store.sqlfiles import query
from hodei_server.store.states import JobState

Row = dict[str, Any]

TOKEN_BYTES = 32  # 256 bits of entropy


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


class WorkerStore:
    def __init__(self, pool: Pool, jobs: JobStore) -> None:
        self.pool = pool
        self.jobs = jobs

    async def create_bootstrap_token(
        self, provider: str, labels: dict[str, str], ttl_seconds: float
    ) -> str:
        """A new one-time token; only its hash is stored."""
        token = secrets.token_urlsafe(TOKEN_BYTES)
        async with self.pool.connection() as conn:
            await conn.execute(
                query("insert_bootstrap_token"),
                {"token_hash": _hash(token), "provider": provider, "labels": Jsonb(labels),
                 "ttl": ttl_seconds},
            )
        return token

    async def register(
        self,
        token: str,
        name: str,
        hostname: str,
        labels: dict[str, str],
        capacity: workers_pb2.Capacity,
        agent_version: str,
        *,
        worker_id: uuid.UUID | None = None,
        certificate: tuple[str, dt.datetime] | None = None,
    ) -> tuple[uuid.UUID, str]:
        """Consume the token atomically and create the worker: (worker id, credential).

        `certificate` is the (serial, expiry) of the client certificate issued to it, if any.
        """
        worker_id = worker_id or uuid.uuid4()
        credential = secrets.token_urlsafe(TOKEN_BYTES)
        async with self.pool.transaction() as conn:
            cur = await conn.execute(
                query("consume_bootstrap_token"),
                {"token_hash": _hash(token), "worker_id": worker_id},
            )
            grant = await cur.fetchone()
            if grant is None:
                raise Unauthenticated("bootstrap token is unknown, expired or already used")
            merged = {**labels, **grant["labels"]}
            await conn.execute(
                query("insert_worker"),
                {
                    "id": worker_id,
                    "name": name,
                    "hostname": hostname,
                    "provider": grant["provider"],
                    "labels": Jsonb(merged),
                    "slots": capacity.slots,
                    "cpus": capacity.cpus,
                    "memory_mb": capacity.memory_mb,
                    "credential_hash": _hash(credential),
                    "agent_version": agent_version,
                },
            )
            if certificate is not None:
                await conn.execute(query("set_worker_certificate"), {
                    "id": worker_id, "serial": certificate[0], "not_after": certificate[1],
                    "presented": None,
                })
        return worker_id, credential

    async def renew_certificate(
        self, worker_id: uuid.UUID, presented: str, serial: str, not_after: dt.datetime
    ) -> None:
        """Record a new certificate of a worker that presented a current (or the previous)
        one; raises Unauthenticated otherwise."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(query("set_worker_certificate"), {
                "id": worker_id, "serial": serial, "not_after": not_after,
                "presented": presented,
            })
            if await cur.fetchone() is None:
                raise Unauthenticated("this certificate is no longer this worker's")

    async def authenticate(self, worker_id: str, credential: str) -> Row:
        try:
            wid = uuid.UUID(worker_id)
        except ValueError:
            raise Unauthenticated("unknown worker") from None
        async with self.pool.connection() as conn:
            cur = await conn.execute(query("get_worker"), {"id": wid})
            row = await cur.fetchone()
        if row is None or not hmac.compare_digest(row["credential_hash"], _hash(credential)):
            raise Unauthenticated("unknown worker or wrong credential")
        if row["state"] == "TERMINATED":
            raise Unauthenticated("this worker was terminated; register again")
        return row

    async def certificate_serials(self, worker_id: uuid.UUID) -> tuple[str, ...]:
        """The client certificate serials a live worker may present (current, previous)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(query("get_worker"), {"id": worker_id})
            row = await cur.fetchone()
        if row is None:
            raise NotFound(f"worker {worker_id} not found")
        if row["state"] == "TERMINATED":
            return ()
        return tuple(s for s in (row["cert_serial"], row["prev_cert_serial"]) if s)

    async def connected(
        self, worker_id: uuid.UUID, server_id: str, labels: dict[str, str],
        capacity: workers_pb2.Capacity, agent_version: str,
    ) -> None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                query("worker_connected"),
                {"id": worker_id, "server_id": server_id, "labels": Jsonb(labels),
                 "slots": capacity.slots, "cpus": capacity.cpus,
                 "memory_mb": capacity.memory_mb, "agent_version": agent_version},
            )
            if await cur.fetchone() is None:
                raise NotFound(f"worker {worker_id} not found")

    async def heartbeat(
        self, conn: AsyncConnection[Any], worker_id: uuid.UUID, server_id: str,
        metrics: dict[str, Any], running_jobs: int,
    ) -> Deferred[bool]:
        """Record a heartbeat; False when the worker is no longer live on this stream."""
        cur = await conn.execute(
            query("worker_heartbeat"),
            {"id": worker_id, "server_id": server_id, "metrics": Jsonb(metrics),
             "running_jobs": running_jobs},
        )
        return Deferred(cur, lambda row: row is not None)

    async def disconnected(self, worker_id: uuid.UUID, server_id: str, state: str) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                query("worker_disconnected"),
                {"id": worker_id, "server_id": server_id, "state": state},
            )

    async def drain(
        self, worker_id: uuid.UUID, grace_seconds: float, actor: str, origin: str = ""
    ) -> tuple[Row, DrainWorker]:
        """Mark a live worker DRAINING: (its row, the signal to its agent).

        The signal is published for the other replicas; `origin`, the replica asked to
        drain, delivers it to its own agents itself."""
        async with self.pool.transaction() as conn:
            cur = await conn.execute(query("drain_worker"), {"id": worker_id, "actor": actor})
            row = await cur.fetchone()
            if row is None:
                cur = await conn.execute(query("get_worker"), {"id": worker_id})
                existing = await cur.fetchone()
                if existing is None:
                    raise NotFound(f"worker {worker_id} not found")
                raise Conflict(
                    f"worker {worker_id} is {existing['state']}; only a connected worker "
                    "can be drained"
                )
            signal = DrainWorker(worker_id, grace_seconds, origin)
            await publish(conn, signal)
        return row, signal

    async def list_workers(self, include_all: bool) -> list[Row]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(query("list_workers"), {"all": include_all})
            return await cur.fetchall()

    async def expire_lost(self, ttl_seconds: float) -> list[uuid.UUID]:
        """Mark silent workers LOST and requeue (or fail) their active jobs."""
        async with self.pool.transaction() as conn:
            cur = await conn.execute(query("mark_lost_workers"), {"ttl": ttl_seconds})
            lost = [row["id"] for row in await cur.fetchall()]
            if not lost:
                return []
            cur = await conn.execute(query("active_jobs_of_workers"), {"worker_ids": lost})
            for job in await cur.fetchall():
                await self.jobs.finish(
                    conn, job["id"], job["attempt"], job["worker_id"], JobState.LOST, None,
                    "worker lost: no heartbeat within the TTL", "reconciler",
                )
        return lost
