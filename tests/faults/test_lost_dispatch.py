"""A job whose RunJob went down with its agent's stream is sent again, as the same attempt.

The stream breaks after the server wrote the RunJob and before the agent read it (a relay
holds the bytes, then drops the connection): the job is assigned to a worker that never
heard of it. When the agent reconnects without it, the server sends it again on the new
stream instead of requeueing it as a second attempt.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.conftest import Recorder
from tests.faults.harness import (
    FaultServer,
    free_port,
    get_job,
    kill_groups,
    start_agent,
    state_of,
    submit,
    wait_for,
)
from tests.faults.proxy import CuttableProxy
from tests.faults.test_partition import job_events

pytestmark = pytest.mark.e2e

TTL = 20.0


@pytest.fixture
def behind_proxy(tmp_path: Path, database_url: str,
                 servers: list[FaultServer]) -> Iterator[tuple[FaultServer, CuttableProxy]]:
    port = free_port()
    proxy = CuttableProxy("127.0.0.1", port).start()
    server = FaultServer(tmp_path, database_url, workers=0, slots=1, heartbeat_ttl=TTL,
                         listen=f"127.0.0.1:{port}")
    servers.append(server)
    server.start(wait_workers=False)
    agent = start_agent(database_url, f"127.0.0.1:{proxy.port}", tmp_path, "relayed")
    try:
        server.wait_workers(1)
        yield server, proxy
    finally:
        proxy.heal()
        kill_groups([agent.pid])
        proxy.stop()


def test_a_runjob_lost_with_its_stream_is_sent_again_as_the_same_attempt(
    behind_proxy: tuple[FaultServer, CuttableProxy], database_url: str,
    record_figure: Recorder,
) -> None:
    server, proxy = behind_proxy
    tag = f"echo lost-{uuid.uuid4().hex[:8]}"
    with server.channel() as channel:
        proxy.cut()
        job_id = submit(channel, command=["sh", "-c", tag], max_attempts=3)
        wait_for(lambda: state_of(channel, job_id) == "ASSIGNED", 30,
                 "the job to be assigned to the cut-off agent")
        time.sleep(0.5)  # the RunJob is written, and held by the relay
        proxy.reset()
        reset_at = time.monotonic()
        wait_for(lambda: state_of(channel, job_id) == "SUCCEEDED", 60, "the job to succeed")
        recovered = time.monotonic() - reset_at
        job = get_job(channel, job_id)
    events = job_events(database_url, job_id)
    record_figure("attempts after the RunJob was lost with its stream", len(job.attempts))
    record_figure("stream drop to success (s)", round(recovered, 2))
    assert len(job.attempts) == 1 and job.attempt == 1
    assert events == ["job.created", "job.assigned", "job.running", "job.succeeded"], events
    assert "sending it again" in server.log_text()
