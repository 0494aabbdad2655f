"""kill -9 the server while 20 jobs print, restart it on the same address."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.faults.conftest import Recorder
from tests.faults.harness import (
    FINAL,
    FaultServer,
    agents_dialing,
    db_states,
    free_port,
    get_job,
    hodeictl_logs,
    line_faults,
    stored_output,
    submit,
    wait_for,
)

pytestmark = pytest.mark.e2e

JOBS = 20
LINES = 300
SCRIPT = f"for i in $(seq 1 {LINES}); do echo line-$i; sleep 0.01; done"


def test_kill9_server_mid_output_loses_no_job_and_no_line(
    tmp_path: Path, database_url: str, servers: list[FaultServer], record_figure: Recorder,
) -> None:
    listen = f"127.0.0.1:{free_port()}"
    first = FaultServer(tmp_path, database_url, workers=2, slots=10, listen=listen,
                        name="first")
    servers.append(first)
    first.start()
    with first.channel() as channel:
        ids = [submit(channel, script=SCRIPT) for _ in range(JOBS)]
    wait_for(lambda: sum(s == "RUNNING" for s in db_states(database_url).values()) == JOBS,
             30, "every job to run")
    time.sleep(0.8)
    orphans = first.agent_pids()
    assert len(orphans) == 2
    first.kill9()
    killed_at = time.monotonic()
    survivors = agents_dialing(listen)
    second = FaultServer(tmp_path, database_url, workers=2, slots=10, listen=listen,
                         name="second")
    servers.append(second)
    second.start(wait_workers=False)
    restart_seconds = time.monotonic() - killed_at

    def finished() -> bool:
        return all(s in FINAL for s in db_states(database_url).values())

    wait_for(finished, 90, "every job to finish", interval=0.2)
    states = db_states(database_url)
    with second.channel() as channel:
        attempts = {job_id: len(get_job(channel, job_id).attempts) for job_id in ids}
    with ThreadPoolExecutor(4) as pool:
        logs = dict(zip(ids, pool.map(lambda j: hodeictl_logs(second, j), ids), strict=True))
    expected_lines = [f"line-{i}".encode() for i in range(1, LINES + 1)]
    expected = b"".join(line + b"\n" for line in expected_lines)
    lost = sum(1 for job_id in ids if states.get(job_id) != "SUCCEEDED")
    gaps = duplicates = 0
    for job_id in ids:
        missing, duplicated = line_faults(expected_lines, logs[job_id].stdout)
        gaps += missing
        duplicates += duplicated
    record_figure("server restart (s)", round(restart_seconds, 2))
    record_figure("jobs lost", lost)
    record_figure("log gaps (lines)", gaps)
    record_figure("duplicate lines", duplicates)
    record_figure("jobs run twice", sum(1 for n in attempts.values() if n > 1))
    assert set(orphans) <= set(survivors), "the agents should outlive a kill -9 of the server"
    detail = f"states={states}\nattempts={attempts}\n{second.log_text()[-6000:]}"
    assert lost == 0, detail
    assert all(n == 1 for n in attempts.values()), detail
    assert (gaps, duplicates) == (0, 0), detail
    for job_id in ids:
        assert logs[job_id].stdout == expected, job_id
        assert stored_output(database_url, job_id) == (expected, b"")
