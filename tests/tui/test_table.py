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


def test_a_job_row_changes_only_its_changed_cells_and_only_widens() -> None:
    from hodeictl.tui.screens.jobs import COLUMNS, JobsScreen

    def row(name: str, state: str) -> list[Text]:
        cells = [Text("-") for _ in COLUMNS]
        cells[1], cells[2] = Text(name), Text(state)
        return cells

    class JobsTable(App[None]):
        def compose(self) -> ComposeResult:
            yield Table()

        def on_mount(self) -> None:
            table = self.query_one(Table)
            for key, label in COLUMNS:
                table.add_column(label, key=key)

    async def scenario() -> None:
        app = JobsTable()
        async with app.run_test(size=(160, 10)) as pilot:
            table = app.query_one(Table)
            table.add_row(*row("build", "PENDING"), key="job")
            await pilot.pause(0.1)
            before = table._update_count  # every change to the table moves it
            JobsScreen._update_row(table, "job", row("build", "PENDING"))
            assert table._update_count == before, "nothing changed, nothing touched"
            JobsScreen._update_row(table, "job", row("build-the-whole-thing", "RUNNING"))
            await pilot.pause(0.1)
            assert table.columns["name"].content_width == len("build-the-whole-thing")
            assert "build-the-whole-thing" in shown(table) and "RUNNING" in shown(table)
            JobsScreen._update_row(table, "job", row("b", "FAILED"))
            await pilot.pause(0.1)
            # Narrower: the column keeps its width (no re-measure of the whole column).
            assert table.columns["name"].content_width == len("build-the-whole-thing")
            assert table.get_cell("job", "name").plain == "b"

    run(scenario())
