"""Job: its spec, attempts, events and its output followed live.

Opening a job asks the server for the tail of its output (the last TAIL_LINES lines, cut
by the server) and follows what comes next into a bounded window of lines
(`OutputBuffer`): a long history is neither read nor replayed. Scrolling up past the
first line held fetches a page of earlier lines at a time; when the window is full, the
newest lines make room, and End (or `f`) goes back to the live tail. Save (`w`) fetches
the whole output from the server into a file.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.reactive import reactive
from textual.widgets import DataTable, Input, Static

from hodei_api.v1 import events_pb2, jobs_pb2
from hodeictl.client import parse_job_id
from hodeictl.errors import HodeiCtlError
from hodeictl.tui import feeds
from hodeictl.tui.cells import age, command_of, job_state, pairs, safe, state_cell
from hodeictl.tui.live import Changes, one_line
from hodeictl.tui.screens.base import HodeiScreen
from hodeictl.tui.store import OutputBuffer, Position, page_lines
from hodeictl.tui.widgets.output import OutputView
from hodeictl.tui.widgets.table import Table

# Lines of output held in memory for one job; others are fetched a page at a time.
RING_LINES = 20_000
# Lines of output shown when a job is opened, and fetched by each scroll back.
TAIL_LINES = 2_000
PAGE_LINES = 1_000
PAGE_RETRY_SECONDS = 5.0
# The longest the output reader runs before it lets the interface have a turn.
YIELD_SECONDS = 0.01
# The most output fed to the window between two checks of YIELD_SECONDS: a chunk from
# the server can hold 10,000 lines, which alone kept keys waiting tens of milliseconds.
SLICE_BYTES = 8192
# Events of the timeline panel.
EVENTS_SHOWN = 7


def slices(data: bytes, size: int) -> Iterator[tuple[int, bytes]]:
    """`data` in pieces of about `size` bytes cut after a newline (a piece without one
    runs to the next newline or the end), each with its offset in `data`."""
    start = 0
    while len(data) - start > size:
        cut = data.find(b"\n", start + size - 1)
        if cut < 0:
            break
        yield start, data[start:cut + 1]
        start = cut + 1
    if start < len(data):
        yield start, data[start:]


def event_line(event: events_pb2.Event) -> Text:
    """`12:03:44 job.running agent`: when (UTC), what, who."""
    when = event.created_at.ToDatetime().strftime("%H:%M:%S")
    detail = event.type.removeprefix("job.")
    return safe(f"{when} {detail} {event.actor}", 120)


class JobScreen(HodeiScreen):
    screen_name = "job"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "search", "Search", key_display="/"),
        Binding("n", "next_match", "Next", show=False),
        Binding("N", "previous_match", "Previous", show=False),
        Binding("w", "save", "Save"),
        Binding("c", "cancel", "Cancel"),
        Binding("r", "retry", "Retry"),
    ]
    ACTION_NEEDS: ClassVar[dict[str, str]] = {"cancel": "cancel", "retry": "retry"}
    # Focus goes straight to the output (not first to the attempts table, then to it:
    # each change of focus recomposes the footer).
    AUTO_FOCUS = "#output"

    job: reactive[jobs_pb2.Job | None] = reactive(None)
    prompt: reactive[str] = reactive("")

    def __init__(self, job_id: str) -> None:
        super().__init__()
        self.job_id = job_id
        self.buffer = OutputBuffer(RING_LINES)
        self.changes = Changes()
        self.events: collections.deque[Text] = collections.deque(maxlen=EVENTS_SHOWN)
        self.paging = False
        # After a failed page, when to ask again.
        self.page_again_at = 0.0

    def compose_body(self) -> ComposeResult:
        yield Static(id="job-summary")
        with Horizontal(id="job-details"):
            yield Table(id="attempts", cursor_type="none")
            yield Static(id="events")
        yield OutputView(self.buffer, id="output")
        yield Input(id="job-prompt")
        yield Static(id="output-status")

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#job-prompt").display = False
        table = self.query_one("#attempts", DataTable)
        for label in ("TRY", "STATE", "WORKER", "EXIT", "STARTED", "REASON"):
            table.add_column(label, key=label.lower())
        try:
            self.job_id = parse_job_id(self.job_id)
        except HodeiCtlError as error:
            self.query_one("#job-summary", Static).update(safe(str(error)))
            return
        self.hodei.job_changes.append(self.changes)
        self.set_interval(0.2, self._job_changed)
        self.set_interval(0.25, self._show_output_status)
        self.load_job()
        self.follow_output()
        self.follow_events()
        view = self.query_one(OutputView)
        self.watch(view, "following", self._following_changed, init=False)
        view.focus()

    def on_unmount(self) -> None:
        if self.changes in self.hodei.job_changes:
            self.hodei.job_changes.remove(self.changes)

    # ---- data -----------------------------------------------------------------------

    @work(group="job", exclusive=True)
    async def load_job(self) -> None:
        try:
            client = await self.hodei.connection.open()
            job = await client.get_job(self.job_id)
        except HodeiCtlError as error:
            self.query_one("#job-summary", Static).update(safe(str(error), 400))
            return
        self.hodei.apply_job(job)
        self.job = job

    @work(group="output", exclusive=True)
    async def follow_output(self) -> None:
        """Stream the job's output, from its tail, into the ring until the job ends."""
        attempt = 0
        turn = time.monotonic()
        try:
            client = await self.hodei.connection.open()
            async with contextlib.aclosing(client.stream_logs(
                    self.job_id, follow=True, tail_lines=TAIL_LINES)) as stream:
                async for event in stream:
                    if event.HasField("end"):
                        self.buffer.flush()
                        self.hodei.apply_job(event.end.job)
                        self.job = event.end.job
                        continue
                    chunk = event.chunk
                    if chunk.attempt != attempt:
                        if attempt:
                            self.buffer.flush()
                            self.buffer.note(f"--- attempt {chunk.attempt} ---")
                        elif chunk.attempt <= 1 and chunk.seq == 1 and not chunk.offset:
                            self.buffer.earlier = False  # the tail is the whole output
                        attempt = chunk.attempt
                    for offset, piece in slices(chunk.data, SLICE_BYTES):
                        self.buffer.feed(chunk.stream, piece, Position(
                            chunk.attempt, chunk.seq, chunk.offset + offset))
                        if time.monotonic() - turn > YIELD_SECONDS:
                            # Buffered chunks arrive without a pause: let keys and
                            # redraws in.
                            await asyncio.sleep(0)
                            turn = time.monotonic()
        except HodeiCtlError as error:
            self.buffer.flush()
            self.buffer.note(f"--- output stream stopped: {one_line(str(error))} ---")

    def on_output_view_wants_earlier(self, message: OutputView.WantsEarlier) -> None:
        if self.paging:
            return  # a page is on its way
        start = self.buffer.first_start()
        if start is None or start != message.start or time.monotonic() < self.page_again_at:
            self.query_one(OutputView).ask_again()  # stale, or too soon: later
            return
        self.paging = True
        self.load_earlier(start)

    @work(group="paging", exclusive=True)
    async def load_earlier(self, start: Position) -> None:
        """Put the page of output before `start` in front of the window."""
        try:
            client = await self.hodei.connection.open()
            chunks = await client.read_log_page(self.job_id, start, PAGE_LINES)
        except HodeiCtlError as error:
            self.notify(one_line(str(error)), title="earlier output", severity="error")
            self.page_again_at = time.monotonic() + PAGE_RETRY_SECONDS
            self.query_one(OutputView).ask_again()
            return
        finally:
            self.paging = False
        if self.buffer.first_start() != start:
            self.query_one(OutputView).ask_again()  # the window moved meanwhile
            return
        lines = page_lines(chunks)
        if sum(line.start is not None for line in lines) < PAGE_LINES:
            self.buffer.earlier = False
        was_at_end = self.buffer.at_end
        self.buffer.prepend(lines)
        if was_at_end and not self.buffer.at_end:
            # The newest lines made room: live output no longer joins the window.
            self.workers.cancel_group(self, "output")

    def _following_changed(self, following: bool) -> None:
        if following and not self.buffer.at_end:
            self.buffer.clear()
            self.query_one(OutputView).reset()
            self.follow_output()

    @work(group="events", exclusive=True)
    async def follow_events(self) -> None:
        """The job's events timeline, live; each change of the job reloads its summary."""
        panel = self.query_one("#events", Static)
        try:
            client = await self.hodei.connection.open()
            async for event in feeds.job_events(client, self.job_id):
                self.events.append(event_line(event))
                panel.update(Text("\n").join(list(self.events)[-EVENTS_SHOWN:]))
                if event.aggregate_type == "job" and self.job is not None:
                    self.load_job()
        except HodeiCtlError as error:
            self.events.append(safe(f"events stopped: {one_line(str(error))}", 200))
            panel.update(Text("\n").join(list(self.events)[-EVENTS_SHOWN:]))

    def _job_changed(self) -> None:
        reset, keys = self.changes.take()
        if reset or self.job_id in keys:
            job = self.hodei.jobs.jobs.get(self.job_id)
            if job is not None and (self.job is None or job is not self.job):
                self.job = job

    def watch_job(self, job: jobs_pb2.Job | None) -> None:
        if job is None:
            return
        spec = job.spec
        lines = [
            f"{job.id}  {spec.name or '(no name)'}",
            f"state {job_state(job.state)}  attempt {job.attempt}"
            f"/{max(spec.max_attempts, 1)}  exit "
            f"{job.exit_code if job.has_exit_code else '-'}  age {age(job.created_at)}"
            f"  by {job.submitted_by or '-'}",
            f"command: {command_of(spec)}",
        ]
        if spec.labels:
            lines.append(f"labels: {pairs(spec.labels)}")
        if spec.selector:
            lines.append(f"selector: {pairs(spec.selector)}")
        if spec.secrets:
            lines.append("secrets: " + ", ".join(s.name for s in spec.secrets))
        if job.reason:
            lines.append(f"reason: {job.reason}")
        summary = Text("\n").join(safe(line, 300) for line in lines)
        self.query_one("#job-summary", Static).update(summary)
        self._show_attempts(job)

    def _show_attempts(self, job: jobs_pb2.Job) -> None:
        table = self.query_one("#attempts", DataTable)
        table.clear()
        names = self.hodei.worker_names()
        for attempt in job.attempts:
            state = job_state(attempt.state)
            worker = names.get(attempt.worker_id, attempt.worker_id[:8])
            table.add_row(Text(str(attempt.attempt)), state_cell(state), safe(worker, 20),
                          Text(str(attempt.exit_code) if attempt.has_exit_code else "-"),
                          Text(age(attempt.started_at)), safe(attempt.reason, 40))

    def _show_output_status(self) -> None:
        view = self.query_one(OutputView)
        mode = "following" if view.following else "paused (f to follow)"
        held = len(self.buffer.lines)
        text = f"{mode} | {held} lines held"
        if self.paging:
            text += ", loading earlier lines"
        elif self.buffer.earlier:
            text += ", earlier lines: scroll up (w saves all)"
        if not self.buffer.at_end:
            text += " | scrolled back: End returns to the live tail"
        if view.search_term:
            text += f" | search: {view.search_term}"
        self.query_one("#output-status", Static).update(safe(text, 300))

    # ---- search, save ---------------------------------------------------------------

    def action_search(self) -> None:
        self._ask("search", "search the output")

    def action_save(self) -> None:
        self._ask("save", f"save the whole output to (default {self.job_id}.log)")

    def _ask(self, what: str, placeholder: str) -> None:
        self.prompt = what
        box = self.query_one("#job-prompt", Input)
        box.placeholder = placeholder
        box.value = ""
        box.display = True
        box.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.input.display = False
        view = self.query_one(OutputView)
        view.focus()
        if self.prompt == "search":
            if not view.find(event.value) and event.value:
                self.notify(safe(f"not found: {event.value}", 100).plain, severity="warning")
        elif self.prompt == "save":
            self.save_output(Path(event.value.strip() or f"{self.job_id}.log").expanduser())
        self.prompt = ""

    def action_next_match(self) -> None:
        view = self.query_one(OutputView)
        view.find(view.search_term)

    def action_previous_match(self) -> None:
        view = self.query_one(OutputView)
        view.find(view.search_term, backwards=True)

    @work(group="save")
    async def save_output(self, path: Path) -> None:
        """Every chunk of every attempt, byte for byte, stdout and stderr interleaved."""
        try:
            client = await self.hodei.connection.open()
            with path.open("wb") as file:
                async with contextlib.aclosing(
                        client.stream_logs(self.job_id, follow=False)) as stream:
                    async for event in stream:
                        if event.HasField("chunk"):
                            file.write(event.chunk.data)
        except (OSError, ValueError) as error:
            self.notify(safe(f"cannot save to {path}: {error}", 300).plain, severity="error")
            return
        except HodeiCtlError as error:
            self.notify(one_line(str(error)), severity="error")
            return
        self.notify(safe(f"saved to {path}", 300).plain)

    def action_back(self) -> None:
        box = self.query_one("#job-prompt", Input)
        if box.display:
            box.display = False
            self.query_one(OutputView).focus()
            return
        super().action_back()

    def action_cancel(self) -> None:
        self.hodei.cancel_job(self.job_id)

    def action_retry(self) -> None:
        self.hodei.retry_job(self.job_id)


