"""The live part of the console: the connection, the feeds and what they stored.

Screens read `jobs` and `fleet` and are told which keys changed (a `Changes` each), so
tables update rows in place. Each feed runs in a Textual worker that shows the banner
(`problem`) and reconnects with backoff when its stream breaks.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from textual.app import App
from textual.reactive import reactive
from textual.worker import Worker

from hodei_api.v1 import auth_pb2, jobs_pb2, workers_pb2
from hodeictl.client import HodeiClient
from hodeictl.errors import HodeiCtlError, NotAuthenticated, PermissionDenied
from hodeictl.target import Settings
from hodeictl.terminal import sanitize
from hodeictl.tui import connection, feeds
from hodeictl.tui.query import JobQuery
from hodeictl.tui.store import FINAL_STATES, JobIndex

# Finished jobs beyond this many are forgotten (oldest first) so memory stays bounded.
MAX_JOBS_HELD = 20_000


@dataclass(eq=False)
class Changes:
    """Keys changed since a screen last looked, or `reset` when everything did.

    Compared by identity: each screen removes its own when it goes.
    """

    keys: set[str] = field(default_factory=set)
    reset: bool = True

    def take(self) -> tuple[bool, set[str]]:
        reset, keys = self.reset, self.keys
        self.reset, self.keys = False, set()
        return reset, keys


def one_line(text: str) -> str:
    return sanitize(" ".join(str(text).split()), single_line=True)


class LiveApp(App[None]):
    """The app's connection and feeds; `HodeiApp` adds screens, commands and actions."""

    problem: reactive[str] = reactive("")
    role: reactive[int] = reactive(auth_pb2.ROLE_UNSPECIFIED)
    context_label: reactive[str] = reactive("")

    def __init__(self, settings: Settings | None = None) -> None:
        super().__init__()
        self.settings = settings or Settings()
        self.connection = connection.Connection(self.settings)
        self.jobs = JobIndex()
        self.fleet: dict[str, workers_pb2.Worker] = {}
        self.job_changes: list[Changes] = []
        self.fleet_changes: list[Changes] = []
        self.job_query = JobQuery()
        # Whether the last job snapshot was cut at its limit (more jobs match).
        self.jobs_more = False
        self._jobs_feed: Worker[None] | None = None

    def start_feeds(self) -> None:
        self.run_worker(self._introduce(), group="feeds", name="whoami")
        self._start_jobs_feed()
        self.run_worker(self._feed("workers", self._open_workers, self._apply_workers),
                        group="feeds", name="workers-feed")

    def _start_jobs_feed(self) -> None:
        self._jobs_feed = self.run_worker(
            self._feed("jobs", self._open_jobs, self._apply_jobs), group="feeds",
            name="jobs-feed")

    def set_job_query(self, query: JobQuery) -> None:
        """Watch the jobs `query` matches (the server filters): a new snapshot, then changes."""
        if query == self.job_query:
            return
        self.job_query = query
        if self._jobs_feed is not None:
            self._jobs_feed.cancel()
        self.jobs = JobIndex()
        for changes in self.job_changes:
            changes.reset = True
        self._start_jobs_feed()

    async def _introduce(self) -> None:
        try:
            await self.connection.learn_role()
        except HodeiCtlError as error:
            self.notify(one_line(str(error)), severity="error", timeout=10)
            return
        self.role = self.connection.role
        self.context_label = self.connection.label

    def _open_jobs(self, client: HodeiClient, revision: int) -> AsyncIterator[feeds.JobsUpdate]:
        return feeds.watch_jobs(client, feeds.job_filter(self.job_query, self.worker_names()),
                                revision)

    def _open_workers(self, client: HodeiClient,
                      revision: int) -> AsyncIterator[feeds.WorkersUpdate]:
        return feeds.watch_workers(client, revision)

    async def _feed(self, name: str, open_stream: Callable[[HodeiClient, int], AsyncIterator[Any]],
                    apply: Callable[[Any], int]) -> None:
        """Keep one feed flowing: on any failure show the banner and reconnect with backoff."""
        failures = 0
        revision = 0
        while True:
            try:
                client = await self.connection.open()
                self.context_label = self.connection.label
                async for update in open_stream(client, revision):
                    failures = 0
                    if self.problem:
                        self.problem = ""
                    revision = apply(update)
                raise HodeiCtlError(f"the server ended the {name} stream")
            except HodeiCtlError as error:
                failures += 1
                delay = connection.backoff(failures)
                fatal = isinstance(error, NotAuthenticated | PermissionDenied)
                self.problem = (f"{one_line(str(error))} | reconnecting in {delay:.1f}s "
                                f"(try {failures})" + (" | check the token" if fatal else ""))
                await asyncio.sleep(delay)

    def _apply_jobs(self, update: feeds.JobsUpdate) -> int:
        if update.reset:
            self.jobs.reset(update.jobs, update.revision)
            self.jobs_more = update.more
            for changes in self.job_changes:
                changes.reset = True
        else:
            for job in update.jobs:
                self.apply_job(job)
            for job_id in update.removed:
                self.jobs.remove(job_id)
                for changes in self.job_changes:
                    changes.keys.add(job_id)
            self.jobs.revision = update.revision
            self._bound_jobs()
        return update.revision

    def apply_job(self, job: jobs_pb2.Job) -> None:
        """Store a job the server sent (a feed change or an action's reply)."""
        old = self.jobs.jobs.get(job.id)
        if old is not None and old.updated_at.ToNanoseconds() > job.updated_at.ToNanoseconds():
            return  # an older version than the one held
        self.jobs.upsert(job)
        for changes in self.job_changes:
            changes.keys.add(job.id)

    def _bound_jobs(self) -> None:
        excess = len(self.jobs.jobs) - MAX_JOBS_HELD
        if excess <= 0:
            return
        finished = sorted((j for j in self.jobs.jobs.values() if j.state in FINAL_STATES),
                          key=lambda j: j.updated_at.ToNanoseconds())
        for job in finished[:excess]:
            self.jobs.remove(job.id)
            for changes in self.job_changes:
                changes.keys.add(job.id)

    def _apply_workers(self, update: feeds.WorkersUpdate) -> int:
        if update.reset:
            self.fleet = {w.id: w for w in update.workers}
            for changes in self.fleet_changes:
                changes.reset = True
        else:
            for worker in update.workers:
                self.apply_worker(worker)
            for worker_id in update.removed:
                self.fleet.pop(worker_id, None)
                for changes in self.fleet_changes:
                    changes.keys.add(worker_id)
        return update.revision

    def apply_worker(self, worker: workers_pb2.Worker) -> None:
        self.fleet[worker.id] = worker
        for changes in self.fleet_changes:
            changes.keys.add(worker.id)

    def worker_names(self) -> dict[str, str]:
        return {w.id: w.name for w in self.fleet.values()}

    def notify(self, message: str, *, title: str = "", severity: Any = "information",
               timeout: float | None = None, markup: bool = False) -> None:
        """Every notice is plain text, sanitised: what a server says is never markup."""
        super().notify(sanitize(message), title=sanitize(title, single_line=True),
                       severity=severity, timeout=timeout, markup=False)

