"""Dashboard: jobs by state, started and finished per second, the fleet, latest failures.

The jobs by state are the server's own count of every job (CountJobs, asked every few
seconds while the dashboard shows), not of the jobs the console happens to hold; the
rates and failures come from the jobs feed.
"""

from __future__ import annotations

import collections

from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, Sparkline, Static

from hodei_api.v1 import jobs_pb2, workers_pb2
from hodeictl.errors import HodeiCtlError
from hodeictl.tui.cells import (
    STATE_STYLES,
    age,
    job_name,
    job_state,
    safe,
    short_id,
    worker_state,
)
from hodeictl.tui.live import one_line
from hodeictl.tui.screens.base import HodeiScreen

# Seconds the sparklines show.
WINDOW = 120
# How often the server's count of jobs by state is asked for.
TOTALS_SECONDS = 2.0
LIVE_WORKERS = (workers_pb2.WORKER_STATE_READY, workers_pb2.WORKER_STATE_BUSY,
                workers_pb2.WORKER_STATE_DRAINING)


class DashboardScreen(HodeiScreen):
    screen_name = "dashboard"

    def __init__(self) -> None:
        super().__init__()
        # The server's count of jobs by state; None until it answered.
        self.totals: dict[int, int] | None = None
        self.totals_problem = ""

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="dash-top"):
            yield Static(id="dash-states", classes="panel")
            with Vertical(id="dash-rates", classes="panel"):
                yield Label("", id="started-label")
                yield Sparkline([0.0], id="started")
                yield Label("", id="finished-label")
                yield Sparkline([0.0], id="finished")
            yield Static(id="dash-fleet", classes="panel")
        yield Static(id="dash-failures", classes="panel")

    def on_mount(self) -> None:
        super().on_mount()
        self.set_interval(1.0, self.redraw)
        self.set_interval(TOTALS_SECONDS, self.load_totals)
        self.load_totals()
        self.redraw()

    @work(group="totals", exclusive=True)
    async def load_totals(self) -> None:
        if not self.is_current and self.totals is not None:
            return  # not shown: no need to ask
        try:
            client = await self.hodei.connection.open()
            self.totals = await client.count_jobs()
            self.totals_problem = ""
        except HodeiCtlError as error:
            self.totals_problem = one_line(str(error))
        self.redraw()

    def redraw(self) -> None:
        jobs = self.hodei.jobs
        jobs.rates.tick()
        self.query_one("#dash-states", Static).update(self._states())
        started = list(jobs.rates.started)[-WINDOW:]
        finished = list(jobs.rates.finished)[-WINDOW:]
        self.query_one("#started-label", Label).update(
            Text(f"started/s  now {started[-1]}  peak {max(started)}  ({WINDOW}s)"))
        self.query_one("#started", Sparkline).data = [float(v) for v in started]
        self.query_one("#finished-label", Label).update(
            Text(f"finished/s now {finished[-1]}  peak {max(finished)}"))
        self.query_one("#finished", Sparkline).data = [float(v) for v in finished]
        self.query_one("#dash-fleet", Static).update(self._fleet())
        self.query_one("#dash-failures", Static).update(self._failures())

    def _states(self) -> Table:
        counts: dict[int, int]
        if self.totals is not None:
            counts = self.totals
            table = Table(title="jobs by state (server)", expand=True,
                          box=None)
        else:
            counts = self.hodei.jobs.by_state()
            table = Table(title="jobs by state (held)", expand=True, box=None)
        table.add_column("STATE")
        table.add_column("JOBS", justify="right")
        for value in sorted(jobs_pb2.JobState.values()):
            if value == jobs_pb2.JOB_STATE_UNSPECIFIED:
                continue
            name = job_state(value)
            table.add_row(Text(name, style=STATE_STYLES.get(name, "")), str(counts.get(value, 0)))
        table.caption = f"total {sum(counts.values())}"
        if self.totals_problem:
            table.caption += f" | count: {self.totals_problem}"
        return table

    def _fleet(self) -> Table:
        workers = list(self.hodei.fleet.values())
        table = Table(title="workers", expand=True, box=None)
        for column in ("PROVIDER", "STATE", "N", "SLOTS"):
            table.add_column(column)
        groups: dict[tuple[str, str], list[workers_pb2.Worker]] = collections.defaultdict(list)
        for worker in workers:
            groups[(worker.provider or "-", worker_state(worker.state))].append(worker)
        for (provider, state), members in sorted(groups.items()):
            used = sum(w.running_jobs for w in members)
            slots = sum(w.capacity.slots for w in members)
            table.add_row(safe(provider, 20), Text(state, style=STATE_STYLES.get(state, "")),
                          str(len(members)), f"{used}/{slots}")
        live = [w for w in workers if w.state in LIVE_WORKERS]
        table.caption = (f"slots in use {sum(w.running_jobs for w in live)}"
                         f"/{sum(w.capacity.slots for w in live)}")
        return table

    def _failures(self) -> Table:
        table = Table(title="latest failures", expand=True, box=None)
        for column in ("ID", "NAME", "STATE", "AGE", "REASON"):
            table.add_column(column)
        for job in reversed(self.hodei.jobs.failures):
            state = job_state(job.state)
            table.add_row(short_id(job.id), safe(job_name(job), 30),
                          Text(state, style=STATE_STYLES.get(state, "")),
                          age(job.finished_at), safe(job.reason, 60))
        return table
