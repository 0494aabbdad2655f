"""The local provider scales agents with demand, within its bounds."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.e2e.harness import ServerProcess

pytestmark = pytest.mark.e2e


def live_workers(server: ServerProcess) -> list[dict[str, object]]:
    listing = json.loads(server.hodeictl("worker", "list", "-o", "json").stdout)
    return [w for w in listing if w["state"] in ("ready", "busy")]


def test_agents_start_on_demand_up_to_the_maximum_and_stop_when_idle(
    tmp_path: Path, database_url: str,
) -> None:
    server = ServerProcess(tmp_path, database_url, workers=0, max_workers=2, slots=2,
                           provider_config="idle_timeout = 2.0").start()
    try:
        assert live_workers(server) == []
        # Six jobs need three agents of two slots: the provider stops at two.
        ids = [server.hodeictl("job", "submit", "--", "sh", "-c", "sleep 3; echo ok")
               .stdout.decode().strip() for _ in range(6)]
        peak = 0
        deadline = time.monotonic() + 60
        done: set[str] = set()
        while time.monotonic() < deadline and len(done) < len(ids):
            peak = max(peak, len(live_workers(server)))
            listing = json.loads(server.hodeictl("job", "list", "--state", "succeeded",
                                                 "-o", "json").stdout)
            done = {job["id"] for job in listing}
            time.sleep(0.2)
        assert done == set(ids)
        assert peak == 2
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and live_workers(server):
            time.sleep(0.3)
        assert live_workers(server) == []  # idle agents were drained and stopped
    finally:
        server.stop()


def test_provider_list_shows_workers_capacity_and_health(server: ServerProcess) -> None:
    out = server.hodeictl("provider", "list", "-o", "json")
    assert out.returncode == 0, out.stderr
    [provider] = json.loads(out.stdout)
    assert (provider["name"], provider["type"], provider["workers"]) == ("local", "local", 2)
    assert (provider["min_workers"], provider["max_workers"]) == (2, 2)
    assert (provider["slots_total"], provider["slots_used"]) == (8, 0)
    assert provider["healthy"] is True
    table = server.hodeictl("provider", "list")
    assert b"local" in table.stdout and b"0/8" in table.stdout and b"ok" in table.stdout


def test_ephemeral_workers_run_one_job_each_then_go(tmp_path: Path, database_url: str) -> None:
    server = ServerProcess(tmp_path, database_url, workers=0, max_workers=2,
                           provider_config="ephemeral = true").start()
    try:
        ids = [server.hodeictl("job", "submit", "--", "sh", "-c", "echo $HODEI_WORKER_ID")
               .stdout.decode().strip() for _ in range(3)]
        deadline = time.monotonic() + 90
        done: dict[str, dict[str, object]] = {}
        while time.monotonic() < deadline and len(done) < len(ids):
            listing = json.loads(server.hodeictl("job", "list", "--state", "succeeded",
                                                 "-o", "json").stdout)
            done = {job["id"]: job for job in listing}
            time.sleep(0.3)
        assert set(done) == set(ids)
        ran_on = [server.hodeictl("job", "logs", i).stdout.decode().strip() for i in ids]
        assert len(set(ran_on)) == 3  # one worker per job
        assert {str(done[i]["worker_id"]) for i in ids} == set(ran_on)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and live_workers(server):
            time.sleep(0.3)
        assert live_workers(server) == []
        everyone = json.loads(server.hodeictl("worker", "list", "--all", "-o", "json").stdout)
        assert sorted({w["state"] for w in everyone}) == ["terminated"]
    finally:
        server.stop()
