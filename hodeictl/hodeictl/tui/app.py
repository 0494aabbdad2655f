"""The operator console: one Textual app, fed by the server's streams.

The app owns the connection and the feeds (network I/O in Textual workers); screens read
what the feeds stored (`jobs`, `fleet`) and are told which keys changed, so tables update
rows in place. Every action goes through `act()`, which knows the caller's role and
`--read-only`, and shows the server's one-line reason when a call is refused.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from textual.app import App
from textual.binding import Binding, BindingType
from textual.reactive import reactive
from textual.screen import Screen
from textual.worker import Worker

from hodei_api.v1 import auth_pb2, jobs_pb2, workers_pb2
from hodeictl.client import HodeiClient
from hodeictl.errors import HodeiCtlError, NotAuthenticated, PermissionDenied
from hodeictl.target import Settings
from hodeictl.terminal import sanitize
from hodeictl.tui import connection, feeds
from hodeictl.tui.cells import role_name
from hodeictl.tui.query import JobQuery
from hodeictl.tui.store import FINAL_STATES, JobIndex

T = TypeVar("T")

# Which role each action needs (the server decides in the end; this hides what would fail).
ACTION_ROLES = {
    "submit": auth_pb2.ROLE_SUBMITTER,
    "cancel": auth_pb2.ROLE_SUBMITTER,
    "retry": auth_pb2.ROLE_SUBMITTER,
    "drain": auth_pb2.ROLE_OPERATOR,
}
ADMIN_SCREENS = frozenset({"tokens", "audit"})
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


class HodeiApp(App[None]):
    """`hodeictl tui`."""

    CSS_PATH = Path(__file__).with_name("app.tcss")
    TITLE = "hodei"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("colon", "command_mode", ":cmd", key_display=":"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("1", "switch_mode('dashboard')", "Dashboard", show=False),
        Binding("2", "switch_mode('jobs')", "Jobs", show=False),
        Binding("3", "switch_mode('workers')", "Workers", show=False),
        Binding("q", "quit", "Quit"),
    ]

    problem: reactive[str] = reactive("")
    role: reactive[int] = reactive(auth_pb2.ROLE_UNSPECIFIED)
    context_label: reactive[str] = reactive("")

    def __init__(self, settings: Settings | None = None, *, read_only: bool = False,
                 start_screen: str = "jobs") -> None:
        super().__init__()
        self.settings = settings or Settings()
        self.read_only = read_only
        self.start_screen = start_screen
        self.connection = connection.Connection(self.settings)
        self.jobs = JobIndex()
        self.fleet: dict[str, workers_pb2.Worker] = {}
        self.job_changes: list[Changes] = []
        self.fleet_changes: list[Changes] = []
        self.extra_screens: dict[str, type[Screen[Any]]] = {}
        self.job_query = JobQuery()
        # Whether the last job snapshot was cut at its limit (more jobs match).
        self.jobs_more = False
        self._jobs_feed: Worker[None] | None = None

    # ---- screens --------------------------------------------------------------------

    def on_mount(self) -> None:
        from hodeictl.tui.screens import (
            audit,
            dashboard,
            jobs,
            providers,
            secrets,
            tokens,
            workers,
        )

        builtin: dict[str, type[Screen[Any]]] = {
            "dashboard": dashboard.DashboardScreen,
            "jobs": jobs.JobsScreen,
            "workers": workers.WorkersScreen,
            "providers": providers.ProvidersScreen,
            "secrets": secrets.SecretsScreen,
            "tokens": tokens.TokensScreen,
            "audit": audit.AuditScreen,
        }
        self.extra_screens = plugin_screens(builtin)
        for name, screen in {**builtin, **self.extra_screens}.items():
            self.add_mode(name, screen)
        self.start_feeds()
        self.switch_mode(self.start_screen if self.start_screen in self.screen_names()
                         else "jobs")

    def screen_names(self) -> list[str]:
        return [*self._modes]

    def show_screen(self, name: str) -> str | None:
        """Switch to the screen `name`; the reason it cannot be shown otherwise."""
        if name not in self._modes:
            return f"no screen {name!r}; one of: {', '.join(self.screen_names())}"
        if name in ADMIN_SCREENS and self.role < auth_pb2.ROLE_ADMIN:
            return f"{name} is for admins (you are {role_name(self.role)})"
        self.switch_mode(name)
        return None

    def action_command_mode(self) -> None:
        from hodeictl.tui.screens.command import CommandPrompt

        self.push_screen(CommandPrompt())

    def action_help(self) -> None:
        from hodeictl.tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[Any]:
        from textual.app import SystemCommand

        yield from super().get_system_commands(screen)
        for name in self.screen_names():
            yield SystemCommand(f"Show {name}", f"Switch to the {name} screen",
                                lambda name=name: self.run_command(name))
        if self.can("submit"):
            yield SystemCommand("New job", "Submit a job from a form",
                                lambda: self.run_command("submit"))

    def run_command(self, text: str) -> str | None:
        """Run a `:` command; returns an error line, or None."""
        words = text.strip().lstrip(":").split()
        if not words:
            return None
        verb, args = words[0].lower(), words[1:]
        if verb in ("q", "quit"):
            self.exit()
            return None
        if verb in ("ctx", "context"):
            if not args:
                return "usage: :ctx NAME (one of: " + ", ".join(connection.context_names()) + ")"
            return self.switch_context(args[0])
        if verb == "help":
            self.action_help()
            return None
        if verb in ("submit", "new"):
            if not self.can("submit"):
                return self.refusal("submit")
            from hodeictl.tui.screens.submit import SubmitScreen

            self.push_screen(SubmitScreen())
            return None
        if verb == "job" and args:
            from hodeictl.tui.screens.job import JobScreen

            self.push_screen(JobScreen(args[0]))
            return None
        return self.show_screen(verb)

    def command_words(self) -> list[str]:
        """What `:` completes."""
        words = [*self.screen_names(), "submit", "help", "quit"]
        words += [f"ctx {name}" for name in connection.context_names()]
        return words

    # ---- connection and feeds -------------------------------------------------------

    def switch_context(self, name: str) -> str | None:
        if name not in connection.context_names():
            return (f"no context {name!r}; one of: " + ", ".join(connection.context_names()))
        self.workers.cancel_group(self, "feeds")
        old = self.connection
        self.run_worker(old.close(), group="close")
        # The context's own server and token: --server and --token-file named the first one.
        settings = Settings(context=name, debug=self.settings.debug)
        self.settings = settings
        self.connection = connection.Connection(settings)
        self.role = auth_pb2.ROLE_UNSPECIFIED
        self.jobs = JobIndex()
        self.fleet = {}
        for changes in (*self.job_changes, *self.fleet_changes):
            changes.reset = True
        self.start_feeds()
        self.notify(f"context {name}")
        return None

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

    # ---- actions --------------------------------------------------------------------

    def can(self, action: str) -> bool:
        """Whether `action` is offered: not read-only, and the role allows it."""
        return not self.read_only and self.role >= ACTION_ROLES[action]

    def refusal(self, action: str) -> str:
        if self.read_only:
            return f"{action}: read-only mode"
        return f"{action}: needs the {role_name(ACTION_ROLES[action])} role " \
               f"(you are {role_name(self.role)})"

    def act(self, action: str, call: Callable[[HodeiClient], Awaitable[T]],
            done: Callable[[T], None] | None = None, success: str = "") -> None:
        """Run an action in a worker; the server's reason is shown if it refuses."""
        if not self.can(action):
            self.notify(self.refusal(action), severity="warning")
            return

        async def run() -> None:
            try:
                client = await self.connection.open()
                result = await call(client)
            except HodeiCtlError as error:
                self.notify(one_line(str(error)), title=f"{action} refused",
                            severity="error", timeout=10)
                return
            if done is not None:
                done(result)
            if success:
                self.notify(one_line(success))

        self.run_worker(run(), group="actions", name=action)

    def confirm(self, question: str, then: Callable[[], None]) -> None:
        """Ask before a destructive action."""
        from hodeictl.tui.screens.confirm import ConfirmScreen

        def answered(yes: bool | None) -> None:
            if yes:
                then()

        self.push_screen(ConfirmScreen(question), answered)

    def cancel_job(self, job_id: str) -> None:
        def call(client: HodeiClient) -> Awaitable[jobs_pb2.CancelJobResponse]:
            return client.cancel_job(job_id, reason="cancelled from hodeictl tui")

        self.confirm(f"Cancel job {job_id}?", lambda: self.act(
            "cancel", call, lambda reply: self.apply_job(reply.job),
            success=f"cancel requested: {job_id}"))

    def retry_job(self, job_id: str) -> None:
        self.confirm(f"Run job {job_id} again?", lambda: self.act(
            "retry", lambda client: client.retry_job(job_id), self.apply_job,
            success=f"retried: {job_id}"))

    def drain_worker(self, worker_id: str, name: str) -> None:
        self.confirm(f"Drain worker {name}? It takes no new jobs and exits.", lambda: self.act(
            "drain", lambda client: client.drain_worker(worker_id, 0.0), self.apply_worker,
            success=f"draining {name}"))

    async def action_quit(self) -> None:
        self.workers.cancel_all()
        await self.connection.close()
        self.exit()


def plugin_screens(builtin: dict[str, type[Screen[Any]]]) -> dict[str, type[Screen[Any]]]:
    """Screens plugins add (hook `hodei_tui_screens`), by name; built-ins keep theirs."""
    from hodei_plugins.manager import get_host

    return {name: cls for name, cls in get_host().tui_screens().items()
            if name not in builtin and issubclass(cls, Screen)}
