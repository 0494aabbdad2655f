"""Workers: state, provider, labels, slots, last heartbeat, load; drain."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable

from hodei_api.v1 import workers_pb2
from hodeictl.tui.cells import age, pairs, safe, state_cell, worker_state
from hodeictl.tui.live import Changes
from hodeictl.tui.screens.base import HodeiScreen
from hodeictl.tui.widgets.table import Table

COLUMNS = (("name", "NAME"), ("state", "STATE"), ("provider", "PROVIDER"),
           ("slots", "SLOTS"), ("heartbeat", "HEARTBEAT"), ("load", "LOAD"),
           ("cpu", "CPU%"), ("labels", "LABELS"))


def worker_cells(worker: workers_pb2.Worker) -> list[Text]:
    metrics = worker.metrics
    return [
        safe(worker.name or worker.id, 32),
        state_cell(worker_state(worker.state)),
        safe(worker.provider or "-", 20),
        Text(f"{worker.running_jobs}/{worker.capacity.slots}"),
        Text(age(worker.last_heartbeat_at)),
        Text(f"{metrics.load_average:.2f}" if worker.HasField("metrics") else "-"),
        Text(f"{metrics.cpu_percent:.0f}" if worker.HasField("metrics") else "-"),
        safe(pairs(worker.labels), 60),
    ]


class WorkersScreen(HodeiScreen):
    screen_name = "workers"
    BINDINGS: ClassVar[list[BindingType]] = [Binding("d", "drain", "Drain")]
    ACTION_NEEDS: ClassVar[dict[str, str]] = {"drain": "drain"}

    def __init__(self) -> None:
        super().__init__()
        self.changes = Changes()

    def compose_body(self) -> ComposeResult:
        yield Table(id="workers-table", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        super().on_mount()
        table = self.query_one(DataTable)
        for key, label in COLUMNS:
            table.add_column(label, key=key)
        self.hodei.fleet_changes.append(self.changes)
        self.set_interval(0.2, self.sync)
        self.sync()
        table.focus()

    def on_unmount(self) -> None:
        if self.changes in self.hodei.fleet_changes:
            self.hodei.fleet_changes.remove(self.changes)

    def sync(self) -> None:
        reset, keys = self.changes.take()
        table = self.query_one(DataTable)
        fleet = self.hodei.fleet
        if reset:
            table.clear()
            keys = set(fleet)
        added = False
        for worker_id in keys:
            worker = fleet.get(worker_id)
            present = worker_id in table.rows
            if worker is None:
                if present:
                    table.remove_row(worker_id)
            elif present:
                for (key, _), value in zip(COLUMNS, worker_cells(worker), strict=True):
                    table.update_cell(worker_id, key, value, update_width=True)
            else:
                table.add_row(*worker_cells(worker), key=worker_id)
                added = True
        if added:
            table.sort("name", key=lambda cell: cell.plain)

    def selected(self) -> workers_pb2.Worker | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        return self.hodei.fleet.get(row_key.value or "")

    def action_drain(self) -> None:
        if (worker := self.selected()) is not None:
            self.hodei.drain_worker(worker.id, worker.name or worker.id)
