"""Each screen as drawn from fixed data (pytest-textual-snapshot; --snapshot-update to accept)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from textual.pilot import Pilot

from hodeictl.tui.screens.job import JobScreen
from hodeictl.tui.widgets.output import OutputView
from tests.tui.fixed import JOBS, OUTPUT, FixedApp
from tests.tui.harness import wait_for

SIZE = (140, 40)
Compare = Callable[..., bool]


async def settle(pilot: Pilot[None]) -> None:
    """Let the screen's own loads finish (the feeds run on) and draw what they brought."""
    await wait_for(pilot, lambda: not [w for w in pilot.app.workers
                                       if (w.group in ("listing", "job") or w.name == "whoami")
                                       and w.is_running], within=10)
    await pilot.pause(0.3)


@pytest.mark.parametrize("screen", ["jobs", "workers", "dashboard", "providers", "secrets",
                                    "tokens", "audit"])
def test_screen(snap_compare: Compare, screen: str) -> None:
    async def show(pilot: Pilot[None]) -> None:
        await pilot.pause(0.3)
        pilot.app.switch_mode(screen)
        await settle(pilot)

    assert snap_compare(FixedApp(), terminal_size=SIZE, run_before=show)


def test_job_screen_with_output(snap_compare: Compare) -> None:
    async def open_job(pilot: Pilot[None]) -> None:
        await pilot.pause(0.3)
        screen = JobScreen(JOBS[2].id)
        await pilot.app.push_screen(screen)
        view = screen.query_one(OutputView)
        await wait_for(pilot, lambda: len(screen.buffer.lines) == len(OUTPUT)
                       and view.max_scroll_y > 0 and view.scroll_y == view.max_scroll_y)
        await pilot.pause(0.3)

    assert snap_compare(FixedApp(), terminal_size=SIZE, run_before=open_job)


def test_jobs_filtered(snap_compare: Compare) -> None:
    async def filtered(pilot: Pilot[None]) -> None:
        await pilot.press("slash", *"state:failed", "enter")
        table = pilot.app.screen.query_one("#jobs-table")
        await wait_for(pilot, lambda: getattr(table, "row_count", 0) == 4)
        await pilot.pause(0.3)

    assert snap_compare(FixedApp(), terminal_size=SIZE, run_before=filtered)


def test_read_only_footer(snap_compare: Compare) -> None:
    assert snap_compare(FixedApp(read_only=True), terminal_size=SIZE, press=["_", "_"])


def test_submit_form(snap_compare: Compare) -> None:
    assert snap_compare(FixedApp(), terminal_size=SIZE, press=["_", "n", "_"])


def test_confirm_cancel(snap_compare: Compare) -> None:
    assert snap_compare(FixedApp(), terminal_size=SIZE, press=["_", "c", "_"])


def test_help(snap_compare: Compare) -> None:
    assert snap_compare(FixedApp(), terminal_size=SIZE, press=["_", "question_mark", "_"])
