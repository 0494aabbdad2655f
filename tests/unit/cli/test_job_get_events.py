"""`job get` shows the job's events: a table that fits 80 and 200 columns, and -o json."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
from hodeictl_fakes import FakeJobService, invoke, serve, services

from hodei_api.v1 import events_pb2, events_pb2_grpc, jobs_pb2
from hodeictl import table
from hodeictl.table import cell_width

WORKER = "c68550f5-afda-4cd2-a6f1-d0e93f19bb13"
WAITING = ("the one worker connected is busy (1 of 1 slots in use); provider local is at its "
           "maximum of 1 worker")


def _job() -> jobs_pb2.Job:
    job = jobs_pb2.Job(id=str(uuid.uuid4()), state=jobs_pb2.JOB_STATE_SUCCEEDED, attempt=2,
                       has_exit_code=True)
    job.spec.name = "nightly"
    job.spec.command.extend(["make", "test"])
    job.spec.max_attempts = 2
    return job


def _events(job_id: str) -> list[events_pb2.Event]:
    rows = [
        ("job.created", "token:ci", {"name": "nightly"}),
        ("job.waiting", "reconciler", {"reason": WAITING}),
        ("job.assigned", "server:50ad1a35a10d", {"attempt": 1, "worker_id": WORKER}),
        ("job.running", f"worker:{WORKER}", {"attempt": 1, "pid": 7785}),
        ("job.failed", f"worker:{WORKER}",
         {"attempt": 1, "attempt_state": "FAILED", "exit_code": 3, "reason": "exit code 3",
          "retry_in_seconds": 5}),
        ("job.assigned", "server:50ad1a35a10d", {"attempt": 2, "worker_id": WORKER}),
        ("job.running", f"worker:{WORKER}", {"attempt": 2, "pid": 7790}),
        ("job.succeeded", f"worker:{WORKER}",
         {"attempt": 2, "attempt_state": "SUCCEEDED", "exit_code": 0, "reason": "",
          "retry_in_seconds": 0}),
    ]
    events = []
    for index, (kind, actor, payload) in enumerate(rows, start=1):
        event = events_pb2.Event(id=index, revision=index, type=kind, aggregate_type="job",
                                 aggregate_id=job_id, actor=actor,
                                 payload_json=json.dumps(payload))
        event.created_at.FromSeconds(int(time.time()) - 100 + index)
        events.append(event)
    return events


class FakeEventService(events_pb2_grpc.EventServiceServicer):
    def __init__(self, events: list[events_pb2.Event]) -> None:
        self.events = events
        self.requests: list[events_pb2.WatchEventsRequest] = []

    async def WatchEvents(
        self, request: events_pb2.WatchEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[events_pb2.Event]:
        self.requests.append(request)
        for event in self.events:
            if event.aggregate_id == request.filter.job_id:
                yield event


def _served(job: jobs_pb2.Job, events: FakeEventService | None) -> object:
    register = services(jobs=FakeJobService([job]))

    def both(server: grpc.aio.Server) -> None:
        register(server)
        if events is not None:
            events_pb2_grpc.add_EventServiceServicer_to_server(events, server)

    return serve(both)


@pytest.mark.parametrize("width", [80, 200])
def test_the_timeline_fits_the_terminal(monkeypatch: pytest.MonkeyPatch, width: int) -> None:
    monkeypatch.setattr(table, "terminal_width", lambda: width)
    job = _job()
    service = FakeEventService(_events(job.id))
    with _served(job, service) as address:  # type: ignore[attr-defined]
        shown = invoke("--server", address, "job", "get", job.id[:8])
    assert shown.exit_code == 0, shown.output
    assert service.requests[0].filter.job_id == job.id and not service.requests[0].follow
    lines = shown.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("TIME "))
    timeline = lines[start:]
    assert all(cell_width(line) <= width for line in timeline), timeline
    kinds = [line.split()[2] for line in timeline[1:]]
    assert kinds == ["created", "waiting", "assigned", "running", "failed", "assigned",
                     "running", "succeeded"]
    text = "\n".join(timeline)
    assert "attempt 1, on worker c68550f5" in text
    assert "attempt 1, exit 3, retry in 5s, exit code 3" in text
    if width == 200:  # room for every column and the whole waiting reason
        assert timeline[0].split() == ["TIME", "EVENT", "BY", "DETAIL"]
        assert WAITING in text and f"worker:{WORKER[:8]}" in text
    else:  # who did it goes before what happened is cut short
        assert timeline[0].split() == ["TIME", "EVENT", "DETAIL"]
        assert "reconciler" not in text
        [waiting] = [line for line in timeline if " waiting " in line]
        assert "the one worker connected is busy" in waiting and waiting.endswith("…")
        assert cell_width(waiting) == 80


def test_json_carries_the_events() -> None:
    job = _job()
    with _served(job, FakeEventService(_events(job.id))) as address:  # type: ignore[attr-defined]
        got = invoke("--server", address, "job", "get", job.id, "-o", "json")
    assert got.exit_code == 0, got.output
    data = json.loads(got.stdout)
    assert [e["type"] for e in data["events"]][:3] == ["job.created", "job.waiting",
                                                       "job.assigned"]
    assert data["events"][1]["payload"] == {"reason": WAITING}


def test_a_server_without_events_still_shows_the_job() -> None:
    job = _job()
    with _served(job, None) as address:  # type: ignore[attr-defined]
        shown = invoke("--server", address, "job", "get", job.id)
        as_json = invoke("--server", address, "job", "get", job.id, "-o", "json")
    assert shown.exit_code == 0 and "SUCCEEDED" in shown.stdout
    assert "TIME" not in shown.stdout and shown.stderr == ""
    assert as_json.exit_code == 0 and json.loads(as_json.stdout)["events"] == []
    assert as_json.stderr == ""


class RefusingEventService(events_pb2_grpc.EventServiceServicer):
    async def WatchEvents(
        self, request: events_pb2.WatchEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[events_pb2.Event]:
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, "viewers cannot read events")
        yield events_pb2.Event()  # never reached


def test_events_it_may_not_read_are_one_line_after_the_job() -> None:
    job = _job()
    with _served(job, RefusingEventService()) as address:  # type: ignore[arg-type, attr-defined]
        shown = invoke("--server", address, "job", "get", job.id)
    assert shown.exit_code == 0 and "SUCCEEDED" in shown.stdout
    assert shown.stdout.splitlines()[-1] == (
        "Events: not shown (permission denied: viewers cannot read events)")


def test_events_takes_the_one_output_option() -> None:
    # `events` declared its own -o: yaml and name printed the text lines instead.
    job = _job()
    with _served(job, FakeEventService(_events(job.id))) as address:  # type: ignore[attr-defined]
        as_yaml = invoke("--server", address, "events", "--job", job.id, "-o", "yaml")
        names = invoke("--server", address, "events", "--job", job.id, "-o", "name")
        upper = invoke("--server", address, "events", "--job", job.id, "-o", "JSON")
        follow_yaml = invoke("--server", address, "events", "-f", "-o", "yaml")
    assert as_yaml.exit_code == 0 and as_yaml.stdout.startswith('- "id": 1\n')
    assert names.stdout.split() == [f"event/{index}" for index in range(1, 9)]
    assert [e["type"] for e in json.loads(upper.stdout)][-1] == "job.succeeded"
    assert follow_yaml.exit_code == 2 and follow_yaml.stderr.startswith("hodeictl: --follow")
