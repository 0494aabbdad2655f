"""`:` command mode: a prompt with completion for screens, contexts and actions."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, cast

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import ModalScreen
from textual.suggester import SuggestFromList
from textual.widgets import Input

if TYPE_CHECKING:
    from hodeictl.tui.app import HodeiApp


class CommandPrompt(ModalScreen[None]):
    """`:jobs`, `:workers`, `:ctx prod`, `:submit`, `:job ID`, `:q`; Tab completes."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "dismiss", "Back")]

    def compose(self) -> ComposeResult:
        app = cast("HodeiApp", self.app)
        yield Input(placeholder=":" + "  ".join(app.screen_names()), id="command",
                    suggester=SuggestFromList(app.command_words(), case_sensitive=False))

    def on_key(self, event: object) -> None:
        key = getattr(event, "key", "")
        if key == "tab":
            box = self.query_one(Input)
            if box._suggestion:
                box.value = box._suggestion
                box.cursor_position = len(box.value)
            getattr(event, "prevent_default", lambda: None)()
            getattr(event, "stop", lambda: None)()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        app = cast("HodeiApp", self.app)
        self.dismiss()
        error = app.run_command(event.value)
        if error:
            app.notify(error, severity="error")
