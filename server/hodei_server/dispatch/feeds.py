"""The live feeds of one replica: one reader of the event trail and one of the workers,
each fanned out to every watcher of this replica.

The event hub wakes on the `hodei_events` notification (every statement that writes events
sends it) and on a resync timer and, while anyone watches, reads the settled events after
its position once for all its watchers, and hands each watcher the batch (with, when job
watchers exist, the current rows of the jobs it names). The worker hub re-reads the
workers table once per interval while anyone watches (heartbeats change workers without an
event) and hands out what changed. A watcher's mailbox is bounded: one that falls behind is
marked so and its mailbox dropped; the servicer then cuts it off or starts it again from
the latest state. Joining runs the watcher's own first read under the hub's lock, so
nothing read before it can arrive after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import psycopg

from hodei_server.dispatch.supervise import retry_delay
from hodei_server.errors import DatabaseUnavailable
from hodei_server.store.events import EventStore, Position

log = logging.getLogger(__name__)

Row = dict[str, Any]
T = TypeVar("T")

# Events read at a time (a batch never splits a transaction, so it may hold more).
READ_LIMIT = 1000
# Re-read this often without a notification (a lost one, a listener reconnecting).
RESYNC_SECONDS = 1.0
# Re-read this soon when committed events wait behind a transaction still running (then
# less and less often, up to RESYNC_SECONDS, while it runs on).
HELD_BACK_SECONDS = 0.02
# How long a watcher waits for a hub that can't reach the database yet.
READY_TIMEOUT = 10.0
# While it has live watchers, a hub asks writers to notify it for this long, renewed at a
# third of it (migration 0009's event_watchers).
WATCH_LEASE_SECONDS = 30.0


@dataclass(frozen=True)
class EventBatch:
    """Settled events in feed order, ending at a transaction's end (`end`)."""

    events: list[Row]
    end: Position
    # For job watchers: every job the events name, as it is now (None: deleted).
    jobs: dict[str, Row | None] = field(default_factory=dict)


@dataclass(frozen=True)
class WorkerChange:
    """A worker as it is now (`row`), or gone (`row` None)."""

    worker_id: str
    row: Row | None


class Mailbox(Generic[T]):
    """What a hub has for one watcher, bounded by `limit` items; past it the watcher is
    `behind` and its mail dropped."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.behind = False
        self._items: list[T] = []
        self._weight = 0
        self._ready = asyncio.Event()

    def put(self, item: T, weight: int = 1) -> None:
        if self.behind:
            return
        if self._weight + weight > self.limit:
            self.behind = True
            self._items.clear()
            self._weight = 0
        else:
            self._items.append(item)
            self._weight += weight
        self._ready.set()

    async def take(self) -> list[T]:
        """Everything waiting (empty once `behind`), after waiting for something."""
        await self._ready.wait()
        self._ready.clear()
        items, self._items, self._weight = self._items, [], 0
        return items


class EventHub:
    """Reads the event trail once per replica and fans it out to watchers."""

    def __init__(self, store: EventStore, buffer: int,
                 on_worker_events: Callable[[], None] = lambda: None,
                 server_id: str = "") -> None:
        self.store = store
        self.server_id = server_id or f"hub-{id(self):x}"
        # When this hub last asked writers to notify (monotonic; 0: it has not).
        self._registered_at = 0.0
        self.buffer = buffer
        self.on_worker_events = on_worker_events
        self.lock = asyncio.Lock()
        self.position: Position | None = None
        self.ready = asyncio.Event()
        self._wake = asyncio.Event()
        self._watchers: dict[Mailbox[EventBatch], bool] = {}
        # Watchers that want changes as they happen (not at the resync pace).
        self._live: set[Mailbox[EventBatch]] = set()

    def wake(self) -> None:
        self._wake.set()

    async def join(
        self, first_read: Callable[[Position], Awaitable[T]], *, jobs: bool,
        live: bool = True,
    ) -> tuple[Mailbox[EventBatch], T]:
        """A mailbox for a new watcher, and `first_read(position)`, run so that every
        batch after `position`, and none before, reaches the mailbox. `jobs`: the watcher
        wants the rows of the jobs each batch names. `live`: it wants them as they happen
        (else at the resync pace, which costs writers nothing)."""
        await self._wait_ready()
        async with self.lock:
            if live and not self._live:
                await self._register()
            if not self._watchers:
                # Nobody watched, so nothing was read: start from now.
                self.position = await self.store.horizon()
            assert self.position is not None
            first = await first_read(self.position)
            mailbox: Mailbox[EventBatch] = Mailbox(self.buffer)
            self._watchers[mailbox] = jobs
            if live:
                self._live.add(mailbox)
        return mailbox, first

    def leave(self, mailbox: Mailbox[EventBatch]) -> None:
        self._watchers.pop(mailbox, None)
        self._live.discard(mailbox)
        if not self._live:
            self._wake.set()  # the run loop tells writers to stop notifying

    async def _register(self) -> None:
        await self.store.register_watchers(self.server_id, WATCH_LEASE_SECONDS)
        self._registered_at = time.monotonic()

    async def _keep_registration(self) -> None:
        """Renew the request to writers while live watchers remain; withdraw it after."""
        if self._live:
            if time.monotonic() - self._registered_at > WATCH_LEASE_SECONDS / 3:
                await self._register()
        elif self._registered_at:
            await self.store.unregister_watchers(self.server_id)
            self._registered_at = 0.0

    async def _wait_ready(self) -> None:
        try:
            await asyncio.wait_for(self.ready.wait(), timeout=READY_TIMEOUT)
        except TimeoutError:
            raise DatabaseUnavailable("the event feed can't reach the database yet; "
                                      "try again shortly") from None

    async def run(self, stop: asyncio.Event) -> None:
        failures = held_back = 0
        while not stop.is_set():
            try:
                async with self.lock:
                    await self._keep_registration()
                    held_back = held_back + 1 if await self._advance() else 0
                self.ready.set()
                failures = 0
            except (psycopg.Error, OSError) as exc:
                failures += 1
                log.warning("event feed: database error (%s); retrying",
                            str(exc).strip().splitlines()[0] if str(exc).strip() else exc)
                await _sleep(stop, retry_delay(failures))
                continue
            timeout = (min(RESYNC_SECONDS, HELD_BACK_SECONDS * 2 ** held_back) if held_back
                       else RESYNC_SECONDS)
            if stop.is_set():
                break
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=timeout)
            except TimeoutError:
                pass
            self._wake.clear()
        if self._registered_at:  # else it lapses by itself
            with contextlib.suppress(psycopg.Error, OSError, TimeoutError):
                await asyncio.wait_for(self.store.unregister_watchers(self.server_id), 2.0)

    async def _advance(self) -> bool:
        """Hand out every settled event after the position; True when committed events
        wait behind a transaction still running."""
        if self.position is None:
            self.position = await self.store.horizon()
        if not self._watchers:
            return False  # nobody to tell: the first to join starts from its own now
        while True:
            rows = await self.store.after(self.position, READ_LIMIT)
            settled = [row for row in rows if row["settled"]]
            if not settled:
                return bool(rows)
            last = settled[-1]
            if len(settled) == len(rows) == READ_LIMIT:
                settled += await self.store.rest_of_transaction(
                    Position(last["revision"], last["id"]))
            end = Position.after_transaction(last["revision"])
            await self._hand_out(settled, end)
            self.position = end
            if len(rows) < READ_LIMIT or len(settled) < len(rows):
                return len(settled) < len(rows)

    async def _hand_out(self, events: list[Row], end: Position) -> None:
        jobs: dict[str, Row | None] = {}
        if any(self._watchers.values()):
            ids = list(dict.fromkeys(e["aggregate_id"] for e in events
                                     if e["aggregate_type"] == "job"))
            found = await self.store.jobs_by_ids(ids)
            jobs = {job_id: found.get(job_id) for job_id in ids}
        batch = EventBatch(events, end, jobs)
        weight = max(len(events), len(jobs))
        for mailbox in list(self._watchers):
            mailbox.put(batch, weight)
        if any(e["aggregate_type"] == "worker" for e in events):
            self.on_worker_events()


class WorkerHub:
    """Reads the workers table once per interval (while anyone watches) and fans out what
    changed."""

    def __init__(self, store: EventStore, buffer: int, interval: float) -> None:
        self.store = store
        self.buffer = buffer
        self.interval = interval
        self.lock = asyncio.Lock()
        self._seen: dict[str, Row] = {}
        self._watchers: set[Mailbox[WorkerChange]] = set()
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def join(self) -> tuple[Mailbox[WorkerChange], list[Row]]:
        """A mailbox for a new watcher, and every worker as of joining."""
        async with self.lock:
            rows = await self._refresh()
            mailbox: Mailbox[WorkerChange] = Mailbox(self.buffer)
            self._watchers.add(mailbox)
            self._wake.set()  # the run loop sleeps while nobody watches
        return mailbox, rows

    def leave(self, mailbox: Mailbox[WorkerChange]) -> None:
        self._watchers.discard(mailbox)

    async def _refresh(self) -> list[Row]:
        """Read every worker; hand what changed since the last read to the watchers."""
        rows = await self.store.all_workers()
        now = {str(row["id"]): row for row in rows}
        changes = [WorkerChange(key, row) for key, row in now.items()
                   if self._seen.get(key) != row]
        changes += [WorkerChange(key, None) for key in self._seen if key not in now]
        self._seen = now
        for mailbox in list(self._watchers):
            for change in changes:
                mailbox.put(change)
        return rows

    async def run(self, stop: asyncio.Event) -> None:
        failures = 0
        while not stop.is_set():
            if self._watchers:
                try:
                    async with self.lock:
                        await self._refresh()
                    failures = 0
                except (psycopg.Error, OSError) as exc:
                    failures += 1
                    log.warning("worker feed: database error (%s); retrying",
                                str(exc).strip().splitlines()[0] if str(exc).strip() else exc)
                    await _sleep(stop, retry_delay(failures))
                    continue
            else:
                self._seen = {}
            try:
                await asyncio.wait_for(self._wake.wait(),
                                       timeout=self.interval if self._watchers else RESYNC_SECONDS)
            except TimeoutError:
                pass
            self._wake.clear()


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass
