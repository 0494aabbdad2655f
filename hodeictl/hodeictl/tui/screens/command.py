"""`:` command mode: a prompt with completion for screens, contexts and actions."""

from __future__ import annotations

from typing import ClassVar, cast

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import ModalScreen
from textual.suggester import SuggestFromList
from textual.widgets import Input

from hodeictl.tui.console import Console


class CommandPrompt(ModalScreen[None]):
    """`:jobs`, `:workers`, `:ctx prod`, `:submit`, `:job ID`, `:q`; Tab completes."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "dismiss", "Back")]

    def compose(self) -> ComposeResult:
        app = cast(Console, self.app)
        yield Input(placeholder=":" + "  ".join(app.screen_names()), id="command",
                    suggester=SuggestFromList(app.command_words(), case_sensitive=False))

    def on_key(self, event: object) -> None:
        key = getattr(event, "key", "")
        if key == "tab":
            box = self.query_one(Input)
            if box.cursor_at_end:
                box.action_cursor_right()  # at the end, this takes the suggestion
            getattr(event, "prevent_default", lambda: None)()
            getattr(event, "stop", lambda: None)()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        app = cast(Console, self.app)
        self.dismiss()
        error = app.run_command(event.value)
        if error:
            app.notify(error, severity="error")
