"""What every top-level screen shares: the status line, the connection banner, the footer."""

from __future__ import annotations

from typing import Any, ClassVar, cast

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Footer

from hodeictl.tui.cells import role_name
from hodeictl.tui.console import Console
from hodeictl.tui.widgets.banner import ConnectionBanner, StatusLine


class HodeiScreen(Screen[Any]):
    """A screen of the console; subclasses fill `compose_body`."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", show=False),
    ]
    screen_name = ""

    @property
    def hodei(self) -> Console:
        return cast(Console, self.app)

    def compose(self) -> ComposeResult:
        yield StatusLine(id="status-line")
        yield ConnectionBanner(id="banner")
        yield from self.compose_body()
        yield Footer()

    def compose_body(self) -> ComposeResult:
        yield from ()

    def on_mount(self) -> None:
        banner = self.query_one(ConnectionBanner)
        self.watch(self.app, "problem", lambda value: setattr(banner, "problem", value))
        # Shown once here, not by each watcher's first call: every show refreshes the
        # bindings, and the footer recomposes (mounts its keys anew) for each refresh.
        self.watch(self.app, "role", lambda _: self._show_status(), init=False)
        self.watch(self.app, "context_label", lambda _: self._show_status(), init=False)
        self._show_status()

    def _show_status(self) -> None:
        app = self.hodei
        self.query_one(StatusLine).show(app.context_label or "connecting…",
                                        app.connection.identity, role_name(app.role),
                                        app.read_only)
        self.refresh_bindings()

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 1:
            self.app.pop_screen()
        elif self.screen_name != "jobs":
            self.app.switch_mode("jobs")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Actions the caller may not take are hidden from the footer and do nothing."""
        needed = getattr(type(self), "ACTION_NEEDS", {}).get(action)
        return needed is None or self.hodei.can(needed)
