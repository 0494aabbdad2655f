"""The dashboard counts jobs by state as the server does, not as the console holds them."""

from __future__ import annotations

from pathlib import Path

import pytest

from hodei_api.v1 import jobs_pb2, jobs_pb2_grpc
from hodeictl.tui.query import JobQuery
from hodeictl.tui.screens.dashboard import DashboardScreen
from tests.e2e.harness import ServerProcess, token_channel
from tests.tui.harness import SIZE, make_app, run, shown, submit, wait_for, wait_state

pytestmark = pytest.mark.e2e


def unplaceable(server: ServerProcess) -> None:
    """A job no worker takes: it stays PENDING."""
    spec = jobs_pb2.JobSpec(command=["true"], selector={"pool": "nowhere"})
    with token_channel(server.address, server.token) as channel:
        jobs_pb2_grpc.JobServiceStub(channel).SubmitJob(
            jobs_pb2.SubmitJobRequest(spec=spec), timeout=10)


def test_the_dashboard_shows_the_servers_totals(tui_server: ServerProcess,
                                                 tmp_path: Path) -> None:
    for _ in range(3):
        unplaceable(tui_server)
    done = [submit(tui_server, "true") for _ in range(2)]
    for job in done:
        wait_state(tui_server, job.id, {jobs_pb2.JOB_STATE_SUCCEEDED})

    async def scenario() -> None:
        app = make_app(tui_server, tmp_path, start_screen="dashboard")
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen))
            screen = app.screen
            assert isinstance(screen, DashboardScreen)
            # The console holds only the jobs of its query: here, none.
            app.set_job_query(JobQuery(labels=(("no", "such"),)))
            states = screen.query_one("#dash-states")
            await wait_for(pilot, lambda: screen.totals is not None, what="the server's count")
            await wait_for(pilot, lambda: "jobs by state (server)" in shown(states)
                           and "total 5" in shown(states), shows=lambda: shown(states))
            assert screen.totals == {jobs_pb2.JOB_STATE_PENDING: 3,
                                     jobs_pb2.JOB_STATE_SUCCEEDED: 2}
            assert not app.jobs.jobs
            unplaceable(tui_server)
            await wait_for(pilot, lambda: "total 6" in shown(states), within=10,
                           what="the new job counted", shows=lambda: shown(states))

    run(scenario())
