"""Cancel and timeout: SIGTERM, SIGKILL after the grace, nothing survives."""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import pytest

from tests.faults.conftest import Recorder
from tests.faults.harness import (
    FINAL,
    FaultServer,
    cancel,
    processes_with_arg,
    state_of,
    submit,
    wait_for,
)

pytestmark = pytest.mark.e2e

KILL_GRACE = 5.0  # the agent's SIGTERM → SIGKILL grace (hodei_agent.runner.DEFAULT_KILL_GRACE)


def marker() -> str:
    """A `sleep` argument no other process on the machine has: 300.<random digits>."""
    return f"300.{secrets.randbelow(10**9):09d}"


def test_cancel_and_timeout_leave_nothing_behind(
    tmp_path: Path, database_url: str, servers: list[FaultServer], record_figure: Recorder,
) -> None:
    server = FaultServer(tmp_path, database_url, workers=1, slots=4)
    servers.append(server)
    server.start()
    plain, stubborn, slow = marker(), marker(), marker()
    with server.channel() as channel:
        plain_id = submit(channel, command=["sleep", plain])
        stubborn_id = submit(channel, command=["sh", "-c", f'trap "" TERM; sleep {stubborn}'])
        for job_id in (plain_id, stubborn_id):
            wait_for(lambda j=job_id: state_of(channel, j) == "RUNNING", 30, "the job to run")
        wait_for(lambda: processes_with_arg(plain) and processes_with_arg(stubborn), 10,
                 "the sleeps to start")
        asked = time.monotonic()
        cancel(channel, plain_id)
        cancel(channel, stubborn_id)
        plain_dead = asked + wait_for(lambda: not processes_with_arg(plain), 30,
                                      "the plain sleep to die")
        stubborn_dead = asked + wait_for(lambda: not processes_with_arg(stubborn), 30,
                                         "the stubborn sleep to die")
        wait_for(lambda: {state_of(channel, plain_id), state_of(channel, stubborn_id)} <= FINAL,
                 30, "both jobs to finish")
        cancelled = (state_of(channel, plain_id), state_of(channel, stubborn_id))

        slow_id = submit(channel, command=["sleep", slow], timeout=1)
        wait_for(lambda: processes_with_arg(slow), 30, "the timed sleep to start")
        started = time.monotonic()
        slow_dead = started + wait_for(lambda: not processes_with_arg(slow), 30,
                                       "the timed sleep to die")
        wait_for(lambda: state_of(channel, slow_id) in FINAL, 30, "the timed job to finish")
        timed = state_of(channel, slow_id)
    time.sleep(0.5)
    surviving = sum(len(processes_with_arg(m)) for m in (plain, stubborn, slow))
    record_figure("time to dead, cancelled sleep (s)", round(plain_dead - asked, 3))
    record_figure("time to dead, cancelled TERM-ignoring job (s)",
                  round(stubborn_dead - asked, 3))
    record_figure("time to dead, timeout 1s (s from start)", round(slow_dead - started, 3))
    record_figure("surviving processes", surviving)
    assert cancelled == ("CANCELLED", "CANCELLED"), server.log_text()
    assert timed == "TIMED_OUT", server.log_text()
    assert plain_dead - asked < 2.0
    assert KILL_GRACE - 0.5 <= stubborn_dead - asked < KILL_GRACE + 2.0
    assert 0.9 <= slow_dead - started < 3.0
    assert surviving == 0
