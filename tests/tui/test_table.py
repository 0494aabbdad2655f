"""The console's table draws every cell whole once measured, however early it was drawn."""

from __future__ import annotations

from rich.text import Text
from textual.app import App, ComposeResult

from hodeictl.tui.widgets.table import Table
from tests.tui.harness import run, shown

LONG = "a-job-name-much-wider-than-its-header"
LONGER = LONG + "-and-then-some-more"


class TableApp(App[None]):
    CSS = "Table { height: 1fr; }"

    def compose(self) -> ComposeResult:
        yield Table()

    def on_mount(self) -> None:
        self.query_one(Table).add_column("NAME", key="name")


def test_a_row_drawn_before_the_measure_is_redrawn_whole() -> None:
    async def scenario() -> None:
        app = TableApp()
        async with app.run_test(size=(100, 10)) as pilot:
            table = app.query_one(Table)
            table.add_row(Text(LONG), key="job")
            # Drawn now, before the table measured the row: cut to the header's width.
            assert LONG not in shown(table)
            await pilot.pause(0.2)
            assert LONG in shown(table)
            table.update_cell("job", "name", Text(LONGER), update_width=True)
            shown(table)
            await pilot.pause(0.2)
            assert LONGER in shown(table)

    run(scenario())
