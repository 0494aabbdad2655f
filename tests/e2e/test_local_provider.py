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
