"""The console's data table: Textual's, redrawn whenever its columns change width.

Textual's `DataTable` measures new and updated cells when it is next idle, but caches
what it drew keyed by a change counter the measuring does not move. A row drawn before
that measure (a busy screen, a test reading the screen) stays cut to the old widths,
header widths for a fresh table, until some later change to the table (Textual issue
3533). `Table` moves the counter when the measure changed a column's width, so the next
frame is drawn at the new widths.
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey, RowKey


class Table(DataTable[Text]):
    """A `DataTable` of rich `Text` cells whose columns never stay at stale widths."""

    _drawn_widths: dict[ColumnKey, int] | None = None

    def _column_widths(self) -> dict[ColumnKey, int]:
        return {key: column.get_render_width(self) for key, column in self.columns.items()}

    def _update_dimensions(self, new_rows: Iterable[RowKey]) -> None:
        # Runs on idle after every measure (cell updates end here too); the widths drawn
        # last are compared with the widths now.
        super()._update_dimensions(new_rows)
        widths = self._column_widths()
        if widths != self._drawn_widths:
            self._drawn_widths = widths
            self._update_count += 1  # the key of every render cache
            self.refresh()
