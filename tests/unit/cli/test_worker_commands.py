"""`hodeictl worker list`."""

from __future__ import annotations

import json
import time

from hodeictl_fakes import FakeWorkerService, invoke, serve, services

from hodei_api.v1 import workers_pb2

WORKERS = [
    workers_pb2.Worker(
        id="a3c9e1b2-0000-4000-8000-000000000001",
        name="builder-1",
        state=workers_pb2.WORKER_STATE_BUSY,
        labels={"os": "linux", "arch": "amd64"},
        capacity=workers_pb2.Capacity(slots=4, cpus=8, memory_mb=16384),
        running_jobs=3,
    ),
    workers_pb2.Worker(
        id="a3c9e1b2-0000-4000-8000-000000000002",
        name="old",
        state=workers_pb2.WORKER_STATE_LOST,
    ),
]


def test_worker_list_table_and_json() -> None:
    WORKERS[0].last_heartbeat_at.FromSeconds(int(time.time()) - 125)
    with serve(services(workers=FakeWorkerService(WORKERS))) as address:
        table = invoke("--server", address, "worker", "list")
        everything = invoke("--server", address, "worker", "list", "--all", "-o", "json")
    assert table.exit_code == 0, table.output
    row = next(line for line in table.stdout.splitlines() if "builder-1" in line)
    for cell in ("BUSY", "3/4", "arch=amd64,os=linux", "8", "16384", "2m ago"):
        assert cell in row
    assert "old" not in table.stdout
    listed = json.loads(everything.stdout)
    assert [(w["name"], w["state"]) for w in listed] == [("builder-1", "busy"), ("old", "lost")]
    assert listed[0]["capacity"]["memory_mb"] == 16384
