"""The event feeds' reads: events in settled order, and the rows watchers are sent.

An event's position in the feed is (revision, id): `revision` is the id of the transaction
that wrote it (migration 0009). A reader takes only events of transactions older than its
snapshot's xmin ("settled"): every transaction that could still add an event before them
has ended, so reading on from the last position read never skips one that commits late,
nor reads one twice.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from psycopg.types.json import Jsonb

from hodei_server.store.db import Pool
from hodei_server.store.sqlfiles import query

Row = dict[str, Any]


# An id after every event of a transaction: Position(r, END) is "after transaction r".
END = 2**63 - 1


class Position(NamedTuple):
    """A place in the event feed: after the event (revision, id)."""

    revision: int
    id: int

    @classmethod
    def after_transaction(cls, revision: int) -> Position:
        return cls(revision, END)


@dataclass(frozen=True)
class EventFilter:
    """Which events a reader wants; a field left empty matches every event."""

    job_id: str | None = None
    worker_id: str | None = None
    # Exact types, and prefixes ("job." for "job" or "job.*").
    types: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()
    actor: str | None = None
    correlation_id: str | None = None
    since: dt.datetime | None = None
    # Audit events ("audit.*") are an administrator's to see.
    audit: bool = False

    def matches(self, row: Row) -> bool:
        """The same test as the named query events_matching, on a row already read."""
        kind = row["aggregate_type"]
        if kind == "audit" and not self.audit:
            return False
        if self.job_id is not None and not (kind == "job" and row["aggregate_id"] == self.job_id):
            return False
        if self.worker_id is not None and not (
                (kind == "worker" and row["aggregate_id"] == self.worker_id)
                or (kind == "job" and (row["payload"] or {}).get("worker_id") == self.worker_id)):
            return False
        if (self.types or self.prefixes) and not (
                row["type"] in self.types or any(row["type"].startswith(p) for p in self.prefixes)):
            return False
        if self.actor is not None and row["actor"] != self.actor:
            return False
        if self.correlation_id is not None and row["correlation_id"] != self.correlation_id:
            return False
        return self.since is None or row["created_at"] >= self.since

    def params(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "worker_id": self.worker_id, "types": list(self.types),
                "prefixes": list(self.prefixes), "actor": self.actor,
                "correlation_id": self.correlation_id, "since": self.since, "audit": self.audit}


@dataclass(frozen=True)
class JobFilter:
    """Which jobs a watcher wants; a field left empty matches every job."""

    states: frozenset[str] = frozenset()
    labels: dict[str, str] = field(default_factory=dict)
    name: str = ""
    worker_id: uuid.UUID | None = None
    ids: frozenset[uuid.UUID] = frozenset()
    # Lower-case hex digits and dashes (checked by the API).
    id_prefix: str = ""
    # `*` any text, `?` one character, the rest itself; the whole name must match.
    name_glob: str = ""
    created_after: dt.datetime | None = None

    def matches(self, row: Row) -> bool:
        """The same test as the named query watch_jobs_snapshot, on a row already read."""
        if self.ids and row["id"] not in self.ids:
            return False
        if self.id_prefix and not str(row["id"]).startswith(self.id_prefix):
            return False
        if self.name_glob and not _glob_regex(self.name_glob).fullmatch(row["name"] or ""):
            return False
        if self.created_after is not None and row["created_at"] < self.created_after:
            return False
        if self.states and row["state"] not in self.states:
            return False
        labels = row["labels"] or {}
        if any(labels.get(key) != value for key, value in self.labels.items()):
            return False
        if self.name and self.name.lower() not in (row["name"] or "").lower():
            return False
        return self.worker_id is None or row["worker_id"] == self.worker_id

    def params(self) -> dict[str, Any]:
        """The parameters of the named queries that filter jobs."""
        return {"states": sorted(self.states), "labels": Jsonb(self.labels),
                "name": self.name, "worker_id": self.worker_id, "ids": sorted(self.ids),
                "id_prefix": self.id_prefix,
                "name_like": glob_to_like(self.name_glob) if self.name_glob else None,
                "created_after": self.created_after}


def glob_to_like(glob: str) -> str:
    """A LIKE pattern for a glob: `*` any text, `?` one character, everything else itself
    (LIKE's own `%`, `_` and `\\` escaped)."""
    escaped = glob.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


@functools.lru_cache(maxsize=256)
def _glob_regex(glob: str) -> re.Pattern[str]:
    """The glob of glob_to_like as a regular expression (for a row already read)."""
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c)
                              for c in glob), re.DOTALL)


class EventStore:
    """Reads the event feed and the rows of what its events name."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    async def _all(self, sql: str, params: dict[str, Any] | None = None) -> list[Row]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(sql, params or {})
            return list(await cur.fetchall())

    async def register_watchers(self, server_id: str, ttl: float) -> None:
        """Have writers notify hodei_events for `ttl` seconds: `server_id` has watchers."""
        await self._execute(query("register_watchers"), {"server_id": server_id, "ttl": ttl})

    async def unregister_watchers(self, server_id: str) -> None:
        await self._execute(query("unregister_watchers"), {"server_id": server_id})

    async def _execute(self, sql: str, params: dict[str, Any]) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(sql, params)

    async def horizon(self) -> Position:
        """The start of the feed as of now: every event before it is settled."""
        rows = await self._all(query("events_horizon"))
        return Position.after_transaction(int(rows[0]["horizon"]) - 1)

    async def after(self, position: Position, limit: int) -> list[Row]:
        """The next events after `position` in feed order, with whether each is settled."""
        return await self._all(query("events_after"), {
            "after_revision": position.revision, "after_id": position.id, "limit": limit})

    async def rest_of_transaction(self, position: Position) -> list[Row]:
        """The events of `position`'s transaction after it."""
        return await self._all(query("events_rest_of_transaction"), {
            "revision": position.revision, "after_id": position.id})

    async def matching(
        self, wanted: EventFilter, after: Position, until: Position, limit: int
    ) -> list[Row]:
        """Events in (after, until] that match `wanted`, oldest first."""
        return await self._all(query("events_matching"), {
            **wanted.params(), "after_revision": after.revision, "after_id": after.id,
            "until_revision": until.revision, "until_id": until.id, "limit": limit})

    async def latest_matching(self, wanted: EventFilter, until: Position, limit: int) -> list[Row]:
        """The latest `limit` events up to `until` that match `wanted`, oldest first."""
        rows = await self._all(query("latest_events_matching"), {
            **wanted.params(), "until_revision": until.revision, "until_id": until.id,
            "limit": limit})
        rows.reverse()
        return rows

    async def jobs_changed_since(self, revision: int, until: Position, limit: int) -> list[str]:
        """Ids of the jobs named by events of transactions after `revision`, up to `until`."""
        rows = await self._all(query("jobs_changed_since"), {
            "after_revision": revision, "until_revision": until.revision,
            "until_id": until.id, "limit": limit})
        return [row["aggregate_id"] for row in rows]

    async def jobs_by_ids(self, ids: list[str]) -> dict[str, Row]:
        """The rows of the jobs that still exist among `ids`, by id."""
        valid = []
        for text in ids:
            try:
                valid.append(uuid.UUID(text))
            except ValueError:
                continue
        rows = await self._all(query("jobs_by_ids"), {"ids": valid})
        return {str(row["id"]): row for row in rows}

    async def job_snapshot(self, wanted: JobFilter, limit: int) -> list[Row]:
        """The newest `limit` jobs that match `wanted`."""
        return await self._all(query("watch_jobs_snapshot"), {**wanted.params(),
                                                              "limit": limit})

    async def job_page(self, wanted: JobFilter, after: tuple[dt.datetime, uuid.UUID] | None,
                       limit: int) -> list[Row]:
        """A page of the jobs that match `wanted`, newest first, after (created_at, id)."""
        return await self._all(query("list_jobs_matching"), {
            **wanted.params(), "after_created_at": after[0] if after else None,
            "after_id": after[1] if after else None, "limit": limit})

    async def all_workers(self) -> list[Row]:
        return await self._all(query("all_workers"))

    async def fleet_figures(self) -> dict[str, list[Row]]:
        """What /metrics reports from the database: jobs and workers by state and
        provider, slots, and each live worker's load."""
        async with self.pool.connection() as conn:
            figures = {}
            for key, sql in (("jobs", query("metrics_jobs")),
                             ("workers", query("metrics_workers")),
                             ("slots", query("metrics_slots")),
                             ("load", query("metrics_load"))):
                cur = await conn.execute(sql)
                figures[key] = list(await cur.fetchall())
            return figures
