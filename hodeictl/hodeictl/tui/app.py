"""The operator console: one Textual app, fed by the server's streams.

The connection and the feeds live in `LiveApp` (`hodeictl.tui.live`); this adds the
screens, `:` commands, contexts and actions. Every action goes through `act()`, which
knows the caller's role and `--read-only`, and shows the server's one-line reason when a
call is refused.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from textual.binding import Binding, BindingType
from textual.screen import Screen

from hodei_api.v1 import auth_pb2, jobs_pb2
from hodeictl.client import HodeiClient
from hodeictl.errors import HodeiCtlError
from hodeictl.target import Settings
from hodeictl.tui import connection
from hodeictl.tui.cells import role_name
from hodeictl.tui.live import LiveApp, one_line
from hodeictl.tui.store import JobIndex

T = TypeVar("T")

# Which role each action needs (the server decides in the end; this hides what would fail).
ACTION_ROLES = {
    "submit": auth_pb2.ROLE_SUBMITTER,
    "cancel": auth_pb2.ROLE_SUBMITTER,
    "retry": auth_pb2.ROLE_SUBMITTER,
    "drain": auth_pb2.ROLE_OPERATOR,
}
ADMIN_SCREENS = frozenset({"tokens", "audit"})

class HodeiApp(LiveApp):
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

    def __init__(self, settings: Settings | None = None, *, read_only: bool = False,
                 start_screen: str = "jobs") -> None:
        super().__init__(settings)
        self.read_only = read_only
        self.start_screen = start_screen
        self.extra_screens: dict[str, type[Screen[Any]]] = {}
        # Every screen `:NAME` shows (a mode each), built-in or a plugin's.
        self.screen_classes: dict[str, type[Screen[Any]]] = {}

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
        self.screen_classes = {**builtin, **self.extra_screens}
        for name, screen in self.screen_classes.items():
            self.add_mode(name, screen)
        self.start_feeds()
        self.switch_mode(self.start_screen if self.start_screen in self.screen_names()
                         else "jobs")

    def screen_names(self) -> list[str]:
        return [*self.screen_classes]

    def show_screen(self, name: str) -> str | None:
        """Switch to the screen `name`; the reason it cannot be shown otherwise."""
        if name not in self.screen_classes:
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


if TYPE_CHECKING:
    from hodeictl.tui.console import Console

    def _a_console(app: HodeiApp) -> Console:
        return app  # mypy checks that the app offers what its screens ask of it
