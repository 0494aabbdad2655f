"""Cut agent<->server traffic for 1/2 TTL and for 3 x TTL, then heal."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import psycopg
import pytest

from tests.faults.conftest import Recorder
from tests.faults.harness import (
    FaultServer,
    free_port,
    get_job,
    kill_groups,
    processes_with_arg,
    start_agent,
    state_of,
    submit,
    wait_for,
)
from tests.faults.proxy import CuttableProxy

pytestmark = pytest.mark.e2e

TTL = 4.0


class AliveCounter:
    """Samples how many processes carrying `marker` are alive at once."""

    def __init__(self, marker: str) -> None:
        self.marker = marker
        self.most = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> AliveCounter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.most = max(self.most, len(processes_with_arg(self.marker)))
            time.sleep(0.02)


@pytest.fixture
def setup(tmp_path: Path, database_url: str,
          servers: list[FaultServer]) -> Iterator[tuple[FaultServer, CuttableProxy, list[int]]]:
    port = free_port()
    proxy = CuttableProxy("127.0.0.1", port).start()
    server = FaultServer(tmp_path, database_url, workers=0, slots=1, heartbeat_ttl=TTL,
                         listen=f"127.0.0.1:{port}")
    servers.append(server)
    server.start(wait_workers=False)
    agents: list[int] = []
    try:
        yield server, proxy, agents
    finally:
        proxy.heal()
        kill_groups(agents)
        proxy.stop()


def job_events(url: str, job_id: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT type FROM events WHERE aggregate_id = %s ORDER BY id",
                            (job_id,)).fetchall()
    return [r[0] for r in rows]


def run_behind_proxy(
    setup: tuple[FaultServer, CuttableProxy, list[int]], tmp_path: Path, database_url: str,
    channel: grpc.Channel, tag: str,
) -> str:
    """An agent that reaches the server only through the proxy, running `sleep TAG`."""
    server, proxy, agents = setup
    agents.append(start_agent(database_url, f"127.0.0.1:{proxy.port}", tmp_path, "cut-off").pid)
    server.wait_workers(1)
    time.sleep(TTL)  # the new leader's grace
    job_id = submit(channel, command=["sleep", tag], max_attempts=2)
    wait_for(lambda: state_of(channel, job_id) == "RUNNING", 30, "the job to run")
    return job_id


def test_a_short_cut_changes_nothing(
    setup: tuple[FaultServer, CuttableProxy, list[int]], tmp_path: Path, database_url: str,
    record_figure: Recorder,
) -> None:
    server, proxy, _ = setup
    tag = f"5.{uuid.uuid4().int % 10**9:09d}"
    with server.channel() as channel:
        job_id = run_behind_proxy(setup, tmp_path, database_url, channel, tag)
        proxy.cut()
        time.sleep(TTL / 2)
        proxy.heal()
        wait_for(lambda: state_of(channel, job_id) == "SUCCEEDED", 30, "the job to succeed")
        attempts = len(get_job(channel, job_id).attempts)
    record_figure("attempts after a 1/2 TTL cut", attempts)
    assert attempts == 1
    assert job_events(database_url, job_id) == ["job.created", "job.assigned", "job.running",
                                                "job.succeeded"]
    assert "lost" not in server.log_text()


def test_a_long_cut_gives_one_replacement_and_fences_the_original(
    setup: tuple[FaultServer, CuttableProxy, list[int]], tmp_path: Path, database_url: str,
    record_figure: Recorder,
) -> None:
    server, proxy, agents = setup
    tag = f"6.{uuid.uuid4().int % 10**9:09d}"
    with server.channel() as channel:
        job_id = run_behind_proxy(setup, tmp_path, database_url, channel, tag)
        # A second agent, not behind the proxy, to take the replacement during the cut.
        agents.append(start_agent(database_url, server.address, tmp_path, "direct").pid)
        server.wait_workers(2)
        with AliveCounter(tag) as alive:
            proxy.cut()
            time.sleep(3 * TTL)
            proxy.heal()
            wait_for(lambda: state_of(channel, job_id) == "SUCCEEDED", 60,
                     "the replacement to succeed")
            time.sleep(3)  # the cut-off agent reconnects, is fenced, resends
        job = get_job(channel, job_id)
    record_figure("max attempts alive at once", alive.most)
    record_figure("attempts after a 3 x TTL cut", len(job.attempts))
    assert alive.most == 1
    assert len(job.attempts) == 2
    names = {w.id: w.name for w in server.list_workers()}
    assert names.get(job.attempts[1].worker_id) == "direct"
    with psycopg.connect(database_url) as conn:
        [(first_state,)] = conn.execute(
            "SELECT state FROM job_attempts WHERE job_id = %s AND attempt = 1",
            (job_id,)).fetchall()
    assert first_state == "LOST"
