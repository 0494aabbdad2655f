"""Nothing a job or a server sends drives the console: no escape reaches the terminal, no
markup is read, no line is overwritten."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import DataTable

from hodei_api.v1 import jobs_pb2
from hodeictl.tui.screens.job import JobScreen
from tests.e2e.harness import ServerProcess
from tests.tui.harness import SIZE, make_app, run, shown, submit, wait_for, wait_state

pytestmark = pytest.mark.e2e

# The server refuses controls in names; an argv may hold anything, and the table shows the
# command of a job without a name.
HOSTILE_NAME = "[bold red]markup[/bold red]"
HOSTILE_ARG = "arg\x1b[2J\x1b]0;pwned\x07\u202eevil"
HOSTILE_OUTPUT = ("printf 'clear\\033[2J\\033[H title\\033]0;pwned\\007 over\\rwrite "
                  "[b]bold[/b] \\342\\200\\256rtl\\n'")
LIVE = ("\x1b", "\x07", "\u202e", "\r")


def test_hostile_names_and_output_are_shown_inert(tui_server: ServerProcess,
                                                   tmp_path: Path) -> None:
    job = submit(tui_server, "sh", "-c", HOSTILE_OUTPUT, HOSTILE_ARG)
    named = submit(tui_server, "true", name=HOSTILE_NAME)
    argv = submit(tui_server, "true", HOSTILE_ARG)
    wait_state(tui_server, job.id, {jobs_pb2.JOB_STATE_SUCCEEDED, jobs_pb2.JOB_STATE_FAILED})

    async def scenario() -> None:
        app = make_app(tui_server, tmp_path)
        async with app.run_test(size=SIZE) as pilot:
            table = app.screen.query_one(DataTable)
            await wait_for(pilot, lambda: {job.id, named.id, argv.id} <= set(table.rows))
            assert table.get_cell(named.id, "name").plain == HOSTILE_NAME
            table.move_cursor(row=table.get_row_index(named.id))  # into view
            # Drawn as text, whole: the brackets shown, not read as markup.
            await wait_for(pilot, lambda: HOSTILE_NAME in shown(table),
                           what="the drawn row", shows=lambda: shown(table))
            name = table.get_cell(argv.id, "name").plain
            assert "^[[2J" in name and "^[]0;pwned^G" in name and "<U+202E>" in name
            assert not any(c in name for c in LIVE)
            app.push_screen(JobScreen(job.id))
            await wait_for(pilot, lambda: isinstance(app.screen, JobScreen))
            screen = app.screen
            assert isinstance(screen, JobScreen)
            await wait_for(pilot, lambda: len(screen.buffer.lines) >= 1, what="the output")
            await pilot.pause(0.2)
            line = screen.buffer.lines[0].text
            assert line == ("clear^[[2J^[[H title^[]0;pwned^G over^Mwrite [b]bold[/b] "
                            "<U+202E>rtl")
            drawn = shown(screen.query_one("#output"))
            assert "[b]bold[/b]" in drawn and "^[[2J" in drawn
            summary = shown(screen.query_one("#job-summary"))
            assert "^[[2J" in summary
            assert not any(c in drawn + summary for c in LIVE)

    run(scenario())
