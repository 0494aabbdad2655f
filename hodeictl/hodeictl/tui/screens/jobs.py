"""Jobs: the job table, updated in place by key from the jobs feed; filter, sort, act."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.reactive import reactive
from textual.widgets import DataTable, Input, Static
from textual.widgets.data_table import ColumnKey

from hodei_api.v1 import jobs_pb2
from hodeictl.errors import UsageError
from hodeictl.tui import query
from hodeictl.tui.cells import age, job_name, job_state, safe, short_id, state_cell
from hodeictl.tui.live import Changes, one_line
from hodeictl.tui.screens.base import HodeiScreen
from hodeictl.tui.widgets.table import Table

COLUMNS = (("id", "ID"), ("name", "NAME"), ("state", "STATE"), ("attempt", "TRY"),
           ("worker", "WORKER"), ("exit", "EXIT"), ("age", "AGE"), ("reason", "REASON"))
SORTS = ("newest", "name", "state", "worker")
# At most this many rows in the table; the filter (done by the server) narrows the rest.
MAX_ROWS = 2000
SYNC_SECONDS = 0.1


class _IdCell(Text):
    """The ID cell, carrying the job's creation time to sort by."""

    created_ns: int = 0


class JobsScreen(HodeiScreen):
    screen_name = "jobs"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "Open", show=False),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("s", "sort", "Sort"),
        Binding("n", "submit", "New job"),
        Binding("c", "cancel", "Cancel"),
        Binding("r", "retry", "Retry"),
    ]
    ACTION_NEEDS: ClassVar[dict[str, str]] = {
        "submit": "submit", "cancel": "cancel", "retry": "retry",
    }

    filter_query: reactive[query.JobQuery] = reactive(query.JobQuery())
    sort_by: reactive[str] = reactive("newest")

    def __init__(self) -> None:
        super().__init__()
        self.changes = Changes()
        self._shown: set[str] = set()

    def compose_body(self) -> ComposeResult:
        yield Input(placeholder="filter: state:failed label:team=infra worker:NAME text",
                    id="filter")
        yield Table(id="jobs-table", cursor_type="row", zebra_stripes=True)
        yield Static(id="jobs-summary")

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#filter").display = False
        table = self.query_one(DataTable)
        for key, label in COLUMNS:
            table.add_column(label, key=key)
        self.hodei.job_changes.append(self.changes)
        self.set_interval(SYNC_SECONDS, self.sync)
        self.sync()
        table.focus()

    def on_unmount(self) -> None:
        if self.changes in self.hodei.job_changes:
            self.hodei.job_changes.remove(self.changes)

    # ---- the table ------------------------------------------------------------------

    def sync(self) -> None:
        """Apply what the feed changed since the last call (a rebuild after a reset)."""
        reset, keys = self.changes.take()
        table = self.query_one(DataTable)
        if reset:
            self._rebuild(table)
            return
        if not keys:
            return
        names = self.hodei.worker_names()
        added = False
        for job_id in keys:
            job = self.hodei.jobs.jobs.get(job_id)
            visible = job is not None and self.filter_query.matches(job, names)
            if job_id in self._shown and not visible:
                table.remove_row(job_id)
                self._shown.discard(job_id)
            elif job is not None and visible:
                cells = self._cells(job, names)
                if job_id in self._shown:
                    self._update_row(table, job_id, cells)
                else:
                    table.add_row(*cells, key=job_id)
                    self._shown.add(job_id)
                    added = True
        if added:
            self._trim(table)
            self._sort(table)
        self._summarise()

    @staticmethod
    def _update_row(table: DataTable[Text], job_id: str, cells: list[Text]) -> None:
        """Change the cells that changed. A cell wider than its column widens it; one
        narrower leaves it be (narrowing re-measures the whole column, thousands of cells
        a change, which is what kept the table behind a busy feed)."""
        for (key, _), value in zip(COLUMNS, cells, strict=True):
            if table.get_cell(job_id, key) == value:
                continue
            wider = value.cell_len > table.columns[ColumnKey(key)].content_width
            table.update_cell(job_id, key, value, update_width=wider)

    def _rebuild(self, table: DataTable[Text]) -> None:
        selected = self.selected_id()
        table.clear()
        self._shown.clear()
        names = self.hodei.worker_names()
        rows = [job for job in self.hodei.jobs.ordered()
                if self.filter_query.matches(job, names)][:MAX_ROWS]
        for job in rows:
            table.add_row(*self._cells(job, names), key=job.id)
            self._shown.add(job.id)
        self._sort(table)
        if selected in self._shown:
            table.move_cursor(row=table.get_row_index(selected))
        self._summarise()

    def _trim(self, table: DataTable[Text]) -> None:
        if len(self._shown) <= MAX_ROWS:
            return
        jobs = self.hodei.jobs.jobs
        oldest = sorted(self._shown, key=lambda i: jobs[i].created_at.ToNanoseconds()
                        if i in jobs else 0)
        for job_id in oldest[: len(self._shown) - MAX_ROWS]:
            table.remove_row(job_id)
            self._shown.discard(job_id)

    def _sort(self, table: DataTable[Text]) -> None:
        if self.sort_by == "newest":
            table.sort("id", key=lambda cell: cell.created_ns, reverse=True)
        else:
            table.sort(self.sort_by, key=lambda cell: cell.plain)

    def _cells(self, job: jobs_pb2.Job, names: dict[str, str]) -> list[Text]:
        ident = _IdCell(short_id(job.id))
        ident.created_ns = job.created_at.ToNanoseconds()
        worker = names.get(job.worker_id, short_id(job.worker_id)) if job.worker_id else "-"
        return [
            ident,
            safe(job_name(job), 40),
            state_cell(job_state(job.state)),
            Text(str(job.attempt)),
            safe(worker, 24),
            Text(str(job.exit_code) if job.has_exit_code else "-"),
            Text(age(job.created_at)),
            safe(job.reason or "", 60),
        ]

    def _summarise(self) -> None:
        total = len(self.hodei.jobs.jobs)
        more = " (more match: narrow the filter)" if self.hodei.jobs_more else ""
        text = f"{len(self._shown)} shown of {total} held{more} | sort: {self.sort_by}"
        if not self.filter_query.empty:
            text += f" | filter: {self.filter_query.text()}"
        self.query_one("#jobs-summary", Static).update(safe(text, 400))

    def selected_id(self) -> str | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        return row_key.value

    # ---- filter and sort ------------------------------------------------------------

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        box.value = self.filter_query.text()
        box.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "filter":
            return
        try:
            self.filter_query = query.parse(event.value)
        except UsageError as error:
            self.notify(one_line(str(error)), severity="error")
            return
        event.input.display = False
        self.query_one(DataTable).focus()

    def watch_filter_query(self, value: query.JobQuery) -> None:
        if self.is_mounted:
            self.hodei.set_job_query(value)
            self.changes.reset = True
            self.sync()

    def action_sort(self) -> None:
        self.sort_by = SORTS[(SORTS.index(self.sort_by) + 1) % len(SORTS)]
        self._sort(self.query_one(DataTable))
        self._summarise()

    def action_back(self) -> None:
        box = self.query_one("#filter", Input)
        if box.display:
            box.display = False
            self.query_one(DataTable).focus()
        elif not self.filter_query.empty:
            self.filter_query = query.JobQuery()
        else:
            super().action_back()

    # ---- actions --------------------------------------------------------------------

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value:
            self._open(event.row_key.value)

    def action_open(self) -> None:
        if (job_id := self.selected_id()) is not None:
            self._open(job_id)

    def _open(self, job_id: str) -> None:
        from hodeictl.tui.screens.job import JobScreen

        self.app.push_screen(JobScreen(job_id))

    def action_submit(self) -> None:
        self.hodei.run_command("submit")

    def action_cancel(self) -> None:
        if (job_id := self.selected_id()) is not None:
            self.hodei.cancel_job(job_id)

    def action_retry(self) -> None:
        if (job_id := self.selected_id()) is not None:
            self.hodei.retry_job(job_id)
