"""`?`: the keys of every screen."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

KEYS = (
    ("everywhere", ":", "command mode: :jobs :workers :dashboard :providers :secrets "
     ":tokens :audit :ctx NAME :submit :job ID :q (Tab completes)"),
    ("", "?", "this help"),
    ("", "ctrl+p", "command palette"),
    ("", "1 2 3", "dashboard, jobs, workers"),
    ("", "Esc", "back (close a prompt, clear the filter, leave a screen)"),
    ("", "q", "quit"),
    ("jobs", "Enter", "open the job"),
    ("", "/", "filter: state:failed label:team=infra worker:NAME words"),
    ("", "s", "sort: newest, name, state, worker"),
    ("", "n", "new job (a form)"),
    ("", "c / r", "cancel / retry the job (asks first)"),
    ("job", "f", "follow or pause the output"),
    ("", "g / G", "jump to the start / end of what is held"),
    ("", "/ n N", "search the output, next, previous"),
    ("", "w", "save the whole output to a file"),
    ("", "c / r", "cancel / retry (asks first)"),
    ("workers", "d", "drain the worker (asks first)"),
    ("lists", "ctrl+r", "reload providers, secrets, tokens, audit"),
)


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark,q", "dismiss", "Close"),
    ]

    def compose(self) -> ComposeResult:
        table = Table(title="hodeictl tui: keys", expand=True)
        table.add_column("WHERE")
        table.add_column("KEY")
        table.add_column("WHAT")
        for where, key, what in KEYS:
            table.add_row(where, key, what)
        with VerticalScroll(id="help"):
            yield Static(table)
