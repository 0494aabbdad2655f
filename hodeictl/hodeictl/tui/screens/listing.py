"""A screen showing one listing the server has no stream for, loaded when shown."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Static

from hodeictl.client import HodeiClient
from hodeictl.errors import HodeiCtlError
from hodeictl.tui.live import one_line
from hodeictl.tui.screens.base import HodeiScreen
from hodeictl.tui.widgets.table import Table


class ListingScreen(HodeiScreen):
    """Subclasses give COLUMNS, `fetch(client)` and `cells(item)`."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("ctrl+r", "reload", "Reload")]
    COLUMNS: ClassVar[Sequence[str]] = ()

    def compose_body(self) -> ComposeResult:
        yield Table(cursor_type="row", zebra_stripes=True)
        yield Static(id="listing-note")

    def on_mount(self) -> None:
        super().on_mount()
        table = self.query_one(DataTable)
        for label in self.COLUMNS:
            table.add_column(label)
        table.focus()

    def on_screen_resume(self) -> None:
        self.load()

    def action_reload(self) -> None:
        self.load()

    async def fetch(self, client: HodeiClient) -> Sequence[Any]:
        raise NotImplementedError

    def cells(self, item: Any) -> list[Text]:
        raise NotImplementedError

    @work(exclusive=True, group="listing")
    async def load(self) -> None:
        note = self.query_one("#listing-note", Static)
        try:
            client = await self.hodei.connection.open()
            items = await self.fetch(client)
        except HodeiCtlError as error:
            note.update(Text(one_line(str(error))))
            return
        table = self.query_one(DataTable)
        table.clear()
        for item in items:
            table.add_row(*self.cells(item))
        note.update(Text(f"{len(items)} {self.screen_name} | ctrl+r reloads"))
