"""The console against a real server: every screen and action, driven by Textual's pilot."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, TextArea

from hodei_api.v1 import jobs_pb2, workers_pb2
from hodeictl.tui.app import HodeiApp
from hodeictl.tui.screens.job import JobScreen
from hodeictl.tui.screens.jobs import JobsScreen
from hodeictl.tui.widgets.output import OutputView
from tests.e2e.harness import ServerProcess, create_api_token
from tests.tui.harness import SIZE, make_app, run, shown, submit, wait_for, wait_state

pytestmark = pytest.mark.e2e

FINAL = {jobs_pb2.JOB_STATE_SUCCEEDED, jobs_pb2.JOB_STATE_FAILED,
         jobs_pb2.JOB_STATE_CANCELLED}


def offered_keys(app: HodeiApp) -> set[str]:
    """The keys of the actions the footer offers now."""
    return {key for key, active in app.active_bindings.items()
            if active.enabled and active.binding.show}


def cell(table: DataTable[object], row: str, column: str) -> str:
    return str(getattr(table.get_cell(row, column), "plain", table.get_cell(row, column)))


def test_jobs_table_shows_the_jobs_and_opens_one_with_its_output(
        tui_server: ServerProcess, tmp_path: Path) -> None:
    job = submit(tui_server, "sh", "-c", "for i in 1 2 3; do echo line-$i; done; echo oops >&2",
                 name="three-lines")
    wait_state(tui_server, job.id, FINAL)

    async def scenario() -> None:
        app = make_app(tui_server, tmp_path)
        async with app.run_test(size=SIZE) as pilot:
            table = app.screen.query_one(DataTable)
            await wait_for(pilot, lambda: job.id in table.rows, what="the job's row")
            assert cell(table, job.id, "name") == "three-lines"
            assert cell(table, job.id, "state") == "SUCCEEDED"
            table.move_cursor(row=table.get_row_index(job.id))
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, JobScreen))
            screen = app.screen
            assert isinstance(screen, JobScreen)
            await wait_for(pilot, lambda: len(screen.buffer.lines) >= 4, what="the output")
            await pilot.pause(0.2)
            # Each stream keeps its order; the two interleave as the agent batched them.
            stdout = [line.text for line in screen.buffer.lines if line.stream == 1]
            assert stdout == ["line-1", "line-2", "line-3"]
            stderr = [line for line in screen.buffer.lines if line.text == "oops"]
            assert stderr and stderr[0].stream == 2  # told apart from stdout
            await pilot.press("slash")
            await pilot.press(*"line-2", "enter")
            assert screen.query_one(OutputView).search_term == "line-2"
            await pilot.press("w")
            target = tmp_path / "saved.log"
            screen.query_one("#job-prompt", Input).value = str(target)
            await pilot.press("enter")
            await wait_for(pilot, target.exists, what="the saved output")
            await wait_for(pilot, lambda: b"oops" in target.read_bytes())
            assert b"line-1\nline-2\nline-3\n" in target.read_bytes()
            await pilot.press("escape")
            assert isinstance(app.screen, JobsScreen)

    run(scenario())


def test_submit_form_runs_a_job_and_follows_its_output(
        tui_server: ServerProcess, tmp_path: Path) -> None:
    async def scenario() -> None:
        app = make_app(tui_server, tmp_path)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.role == 4, what="the role")
            await pilot.press("n")
            form = app.screen
            form.query_one("#field-name", Input).value = "from-the-form"
            form.query_one("#field-command", Input).value = "sh -c 'echo hello-form'"
            form.query_one("#field-labels", Input).value = "team=infra"
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: any(j.spec.name == "from-the-form"
                                              for j in app.jobs.jobs.values()),
                           what="the submitted job")
            job = next(j for j in app.jobs.jobs.values() if j.spec.name == "from-the-form")
            assert dict(job.spec.labels) == {"team": "infra"}
            jobs_table = app.screen.query_one(DataTable)
            await wait_for(pilot, lambda: job.id in jobs_table.rows)
            app.push_screen(JobScreen(job.id))
            await wait_for(pilot, lambda: isinstance(app.screen, JobScreen))
            screen = app.screen
            assert isinstance(screen, JobScreen)
            await wait_for(pilot, lambda: any(line.text == "hello-form"
                                              for line in screen.buffer.lines),
                           what="the job's output")
            await wait_for(pilot, lambda: screen.job is not None
                           and screen.job.state == jobs_pb2.JOB_STATE_SUCCEEDED)

    run(scenario())


def test_submit_form_refuses_bad_input_with_one_line(
        tui_server: ServerProcess, tmp_path: Path) -> None:
    async def scenario() -> None:
        app = make_app(tui_server, tmp_path)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.role == 4)
            await pilot.press("n")
            form = app.screen
            form.query_one("#field-command", Input).value = "echo hi"
            form.query_one("#field-timeout", Input).value = "soon"
            await pilot.press("ctrl+s")
            error = shown(form.query_one("#submit-error"))
            assert "timeout" in error and "not a duration" in error
            form.query_one("#field-timeout", Input).value = ""
            form.query_one("#field-command", Input).value = ""
            form.query_one("#field-script", TextArea).text = ""
            await pilot.press("ctrl+s")
            assert "nothing to run" in shown(form.query_one("#submit-error"))

    run(scenario())


def test_cancel_asks_first_then_cancels(tui_server: ServerProcess, tmp_path: Path) -> None:
    job = submit(tui_server, "sleep", "300", name="to-cancel")

    async def scenario() -> None:
        app = make_app(tui_server, tmp_path)
        async with app.run_test(size=SIZE) as pilot:
            table = app.screen.query_one(DataTable)
            await wait_for(pilot, lambda: job.id in table.rows and app.role == 4)
            table.move_cursor(row=table.get_row_index(job.id))
            await pilot.press("c")
            await pilot.press("n")  # the question: no
            await pilot.pause(0.3)
            assert app.jobs.jobs[job.id].state not in FINAL
            await pilot.press("c", "y")
            # The stream brings the job's end to the row, in place.
            await wait_for(pilot, lambda: cell(table, job.id, "state") == "CANCELLED",
                           what="the cancelled state in the table")

    run(scenario())
    assert wait_state(tui_server, job.id, FINAL).state == jobs_pb2.JOB_STATE_CANCELLED


def test_retry_runs_a_finished_job_again(tui_server: ServerProcess, tmp_path: Path) -> None:
    job = submit(tui_server, "false", name="to-retry")
    wait_state(tui_server, job.id, FINAL)

    async def scenario() -> None:
        app = make_app(tui_server, tmp_path)
        async with app.run_test(size=SIZE) as pilot:
            table = app.screen.query_one(DataTable)
            await wait_for(pilot, lambda: job.id in table.rows and app.role == 4)
            table.move_cursor(row=table.get_row_index(job.id))
            await pilot.press("r", "y")
            await wait_for(pilot, lambda: app.jobs.jobs[job.id].attempt == 2
                           and app.jobs.jobs[job.id].state == jobs_pb2.JOB_STATE_FAILED,
                           what="the second attempt's end, streamed")
            await wait_for(pilot, lambda: cell(table, job.id, "attempt") == "2")

    run(scenario())


def test_filter_narrows_the_table(tui_server: ServerProcess, tmp_path: Path) -> None:
    blue = submit(tui_server, "true", name="filter-blue", labels={"team": "blue"})
    red = submit(tui_server, "false", name="filter-red", labels={"team": "red"})
    wait_state(tui_server, red.id, FINAL)
    wait_state(tui_server, blue.id, FINAL)

    async def scenario() -> None:
        app = make_app(tui_server, tmp_path)
        async with app.run_test(size=SIZE) as pilot:
            table = app.screen.query_one(DataTable)
            await wait_for(pilot, lambda: blue.id in table.rows and red.id in table.rows)
            await pilot.press("slash", *"label:team=blue", "enter")
            await wait_for(pilot, lambda: red.id not in table.rows)
            assert blue.id in table.rows
            await pilot.press("slash")
            app.screen.query_one("#filter", Input).value = "state:failed filter-"
            await pilot.press("enter")
            await wait_for(pilot, lambda: blue.id not in table.rows and red.id in table.rows)
            await pilot.press("slash")
            app.screen.query_one("#filter", Input).value = "state:bogus"
            await pilot.press("enter")
            assert red.id in table.rows  # a bad filter changes nothing
            await pilot.press("escape", "escape")
            await wait_for(pilot, lambda: blue.id in table.rows)

    run(scenario())


def test_drain_a_worker_after_asking(tmp_path: Path, database_url: str) -> None:
    server = ServerProcess(tmp_path, database_url, workers=1).start()
    try:
        # A running job keeps the worker DRAINING (an idle one exits at once).
        busy = submit(server, "sleep", "30", name="keeps-it-busy")
        wait_state(server, busy.id, {jobs_pb2.JOB_STATE_RUNNING})

        async def scenario() -> None:
            app = make_app(server, tmp_path)
            async with app.run_test(size=SIZE) as pilot:
                await wait_for(pilot, lambda: app.role == 4 and app.fleet)
                await pilot.press("3")
                table = app.screen.query_one(DataTable)
                await wait_for(pilot, lambda: table.row_count == 1)
                worker = next(iter(app.fleet.values()))
                await pilot.press("d", "y")
                await wait_for(pilot, lambda: app.fleet[worker.id].state
                               == workers_pb2.WORKER_STATE_DRAINING, what="draining")
                await wait_for(pilot, lambda: cell(table, worker.id, "state") == "DRAINING")

        run(scenario())
    finally:
        server.stop()


def test_read_only_offers_no_action(tui_server: ServerProcess, tmp_path: Path) -> None:
    job = submit(tui_server, "sleep", "120", name="read-only-target")

    async def scenario() -> None:
        app = make_app(tui_server, tmp_path, read_only=True)
        async with app.run_test(size=SIZE) as pilot:
            table = app.screen.query_one(DataTable)
            await wait_for(pilot, lambda: job.id in table.rows and app.role == 4)
            table.move_cursor(row=table.get_row_index(job.id))
            keys = offered_keys(app)
            assert not keys & {"c", "r", "n"}
            await pilot.press("c", "y", "n")
            await pilot.pause(0.5)
            assert len(app.screen_stack) == 1  # no question, no form
            assert app.run_command("submit") == "submit: read-only mode"

    run(scenario())
    assert wait_state(tui_server, job.id, FINAL, timeout=1).state not in FINAL


def test_a_viewer_sees_no_actions_and_refusals_show_the_reason(
        tui_server: ServerProcess, tmp_path: Path) -> None:
    viewer = create_api_token(tui_server.database_url, f"viewer-{tmp_path.name}"[:60], "viewer")
    submitter = create_api_token(tui_server.database_url, f"sub-{tmp_path.name}"[:60],
                                 "submitter")
    job = submit(tui_server, "sleep", "120", name="not-the-submitters")

    async def as_viewer() -> None:
        app = make_app(tui_server, tmp_path, token=viewer)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.role == 1, what="the viewer role")
            keys = offered_keys(app)
            assert not keys & {"c", "r", "n"}
            assert "needs the submitter role" in (app.run_command("submit") or "")
            assert "for admins" in (app.run_command("tokens") or "")

    async def as_submitter() -> None:
        app = make_app(tui_server, tmp_path, token=submitter)
        async with app.run_test(size=SIZE) as pilot:
            table = app.screen.query_one(DataTable)
            await wait_for(pilot, lambda: job.id in table.rows and app.role == 2)
            table.move_cursor(row=table.get_row_index(job.id))
            await pilot.press("c", "y")
            await wait_for(pilot, lambda: any("refused" in n.title
                                              for n in app._notifications),
                           what="the refusal")
            note = next(n for n in app._notifications if "refused" in n.title)
            assert "permission denied" in note.message
            assert "\n" not in note.message

    run(as_viewer())
    run(as_submitter())
    cancel = wait_state(tui_server, job.id, FINAL, timeout=1)
    assert cancel.state not in FINAL


def test_command_mode_help_and_every_screen(tui_server: ServerProcess, tmp_path: Path) -> None:
    async def scenario() -> None:
        app = make_app(tui_server, tmp_path)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.role == 4 and app.fleet)
            for name in ("dashboard", "workers", "providers", "secrets", "tokens", "audit",
                         "jobs"):
                await pilot.press("colon", *name, "enter")
                await wait_for(pilot, lambda name=name: app.current_mode == name)
                await pilot.pause(0.2)
            await pilot.press("colon", *"prov")
            await pilot.press("tab", "enter")
            await wait_for(pilot, lambda: app.current_mode == "providers")
            table = app.screen.query_one(DataTable)
            await wait_for(pilot, lambda: table.row_count >= 1, what="the providers")
            await pilot.press("colon", *"nowhere", "enter")
            await pilot.pause(0.1)
            assert any("no screen 'nowhere'" in n.message for n in app._notifications)
            await pilot.press("colon", *"ctx no-such-context", "enter")
            await pilot.pause(0.1)
            assert any("no context 'no-such-context'" in n.message for n in app._notifications)
            await pilot.press("question_mark")
            assert type(app.screen).__name__ == "HelpScreen"
            await pilot.press("escape")
            assert type(app.screen).__name__ != "HelpScreen"

    run(scenario())


def test_dashboard_counts_jobs_and_workers(tui_server: ServerProcess, tmp_path: Path) -> None:
    job = submit(tui_server, "sh", "-c", "exit 3", name="dash-failure")
    wait_state(tui_server, job.id, FINAL)

    async def scenario() -> None:
        app = make_app(tui_server, tmp_path, start_screen="dashboard")
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: job.id in app.jobs.jobs and app.fleet)
            await pilot.pause(1.2)
            states = shown(app.screen.query_one("#dash-states"))
            assert "FAILED" in states
            fleet = shown(app.screen.query_one("#dash-fleet"))
            assert "local" in fleet and "slots in use" in fleet
            failures = shown(app.screen.query_one("#dash-failures"))
            assert "dash-failure" in failures

    run(scenario())


def test_switching_context_inside_the_app(tui_server: ServerProcess, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    viewer = create_api_token(tui_server.database_url, f"ctx-{tmp_path.name}"[:60], "viewer")
    config = tmp_path / "config.toml"
    config.write_text(f'[contexts.watcher]\nserver = "{tui_server.address}"\n'
                      f'token = "{viewer}"\n')
    monkeypatch.setenv("HODEI_CONFIG", str(config))
    monkeypatch.delenv("HODEI_TOKEN", raising=False)
    job = submit(tui_server, "true", name="seen-from-both")

    async def scenario() -> None:
        app = make_app(tui_server, tmp_path)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.role == 4 and job.id in app.jobs.jobs)
            await pilot.press("colon", *"ctx watcher", "enter")
            await wait_for(pilot, lambda: app.role == 1, what="the viewer's role")
            assert app.context_label.startswith("watcher")
            table = app.screen.query_one(DataTable)
            await wait_for(pilot, lambda: job.id in table.rows, what="the jobs again")
            assert not offered_keys(app) & {"c", "r", "n"}

    run(scenario())
