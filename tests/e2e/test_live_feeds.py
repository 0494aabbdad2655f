"""The live streams against a real server: WatchJobs, WatchWorkers, WatchEvents.

A snapshot then the changes; a resume after a reconnect (and after a server restart) with
no gap and no repeat; a watcher that does not read is reset or cut off rather than
buffered; correlation ids ride on every event a job causes.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from hodei_api.v1 import (
    events_pb2,
    events_pb2_grpc,
    jobs_pb2,
    jobs_pb2_grpc,
    workers_pb2,
    workers_pb2_grpc,
)
from tests.e2e.harness import BearerInterceptor, ServerProcess, create_api_token, token_channel

pytestmark = pytest.mark.e2e

JobKind = jobs_pb2.WatchJobsResponse
FINAL = {jobs_pb2.JOB_STATE_SUCCEEDED, jobs_pb2.JOB_STATE_FAILED, jobs_pb2.JOB_STATE_CANCELLED}


class Stream:
    """A server stream read by a thread into a queue, so a test can wait with a deadline."""

    def __init__(self, call: Any) -> None:
        self.call = call
        self.items: queue.Queue[Any] = queue.Queue()
        self.error: grpc.RpcError | None = None
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for item in self.call:
                self.items.put(item)
        except grpc.RpcError as exc:
            self.error = exc
        self.items.put(None)

    def next(self, timeout: float = 30.0) -> Any:
        item = self.items.get(timeout=timeout)
        assert item is not None, f"the stream ended: {self.error}"
        return item

    def until(self, done: Callable[[Any], bool], timeout: float = 60.0) -> list[Any]:
        """Every item up to and including the first for which `done` is true."""
        seen: list[Any] = []
        deadline = time.monotonic() + timeout
        while True:
            item = self.next(max(0.1, deadline - time.monotonic()))
            seen.append(item)
            if done(item):
                return seen

    def close(self) -> None:
        self.call.cancel()
        self.thread.join(timeout=10)


@pytest.fixture
def channel(server: ServerProcess) -> Iterator[grpc.Channel]:
    with server.channel() as chan:
        yield chan


def narrow_channel(server: ServerProcess) -> grpc.Channel:
    """A channel whose receive window stays small (no BDP probing), so that a call it does
    not read soon pushes back on the server."""
    plain = grpc.insecure_channel(server.address, options=[("grpc.http2.bdp_probe", 0)])
    return grpc.intercept_channel(plain, BearerInterceptor(server.token))


def submit(channel: grpc.Channel, *command: str, correlation_id: str = "",
           labels: dict[str, str] | None = None, selector: dict[str, str] | None = None,
           env: dict[str, str] | None = None, metadata: tuple[tuple[str, str], ...] = ()
           ) -> str:
    stub = jobs_pb2_grpc.JobServiceStub(channel)
    spec = jobs_pb2.JobSpec(command=list(command), labels=labels or {},
                            selector=selector or {}, env=env or {})
    response = stub.SubmitJob(jobs_pb2.SubmitJobRequest(spec=spec, correlation_id=correlation_id),
                              timeout=10, metadata=metadata)
    return str(response.job.id)


def wait_final(channel: grpc.Channel, job_id: str, timeout: float = 60.0) -> int:
    stub = jobs_pb2_grpc.JobServiceStub(channel)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = stub.GetJob(jobs_pb2.GetJobRequest(id=job_id), timeout=10).state
        if state in FINAL:
            return int(state)
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


def watch_jobs(channel: grpc.Channel, **request: Any) -> Stream:
    stub = jobs_pb2_grpc.JobServiceStub(channel)
    return Stream(stub.WatchJobs(jobs_pb2.WatchJobsRequest(**request)))


def final(job_id: str) -> Callable[[Any], bool]:
    def done(message: Any) -> bool:
        return (message.kind == JobKind.KIND_UPSERT and message.job.id == job_id
                and message.job.state in FINAL)
    return done


def events(channel: grpc.Channel, **request: Any) -> Any:
    stub = events_pb2_grpc.EventServiceStub(channel)
    return stub.WatchEvents(events_pb2.WatchEventsRequest(**request))


def test_watch_jobs_sends_a_snapshot_then_each_change(server: ServerProcess,
                                                      channel: grpc.Channel) -> None:
    before = submit(channel, "true")
    stream = watch_jobs(channel)
    try:
        snapshot = stream.until(lambda m: m.kind == JobKind.KIND_SYNCED)
        assert [m.job.id for m in snapshot[:-1]] == [before]
        assert all(m.kind == JobKind.KIND_SNAPSHOT for m in snapshot[:-1])
        after = submit(channel, "sh", "-c", "exit 3")
        changes = stream.until(final(after))
        assert {m.kind for m in changes} == {JobKind.KIND_UPSERT}
        # Each message holds the job as it is when the server reads it: changes that
        # land together arrive as one.
        states = [m.job.state for m in changes if m.job.id == after]
        assert states[-1] == jobs_pb2.JOB_STATE_FAILED
        assert changes[-1].job.exit_code == 3
        revisions = [m.revision for m in changes]
        assert revisions == sorted(revisions)
    finally:
        stream.close()


def test_the_server_filters_by_state_label_and_name(server: ServerProcess,
                                                    channel: grpc.Channel) -> None:
    failing = {"team": "infra"}
    stream = watch_jobs(channel, filter=jobs_pb2.JobFilter(
        states=[jobs_pb2.JOB_STATE_FAILED], labels=failing, name=""))
    try:
        stream.until(lambda m: m.kind == JobKind.KIND_SYNCED)
        submit(channel, "true", labels=failing)
        submit(channel, "false", labels={"team": "web"})
        wanted = submit(channel, "false", labels=failing)
        seen = stream.until(final(wanted))
        assert {m.job.id for m in seen} == {wanted}
    finally:
        stream.close()


def test_list_jobs_filters_by_label_and_name_page_by_page(server: ServerProcess,
                                                          channel: grpc.Channel) -> None:
    wanted = {submit(channel, "true", labels={"team": "infra"}, selector={"nowhere": "1"})
              for _ in range(3)}
    submit(channel, "true", labels={"team": "web"}, selector={"nowhere": "1"})
    stub = jobs_pb2_grpc.JobServiceStub(channel)
    seen: list[str] = []
    token = ""
    while True:
        page = stub.ListJobs(jobs_pb2.ListJobsRequest(
            page_size=2, page_token=token,
            filter=jobs_pb2.JobFilter(labels={"team": "infra"})), timeout=10)
        seen += [job.id for job in page.jobs]
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == 3 and set(seen) == wanted
    none = stub.ListJobs(jobs_pb2.ListJobsRequest(
        states=[jobs_pb2.JOB_STATE_RUNNING],
        filter=jobs_pb2.JobFilter(states=[jobs_pb2.JOB_STATE_PENDING])), timeout=10)
    assert not none.jobs
    one = next(iter(wanted))
    by_id = stub.ListJobs(jobs_pb2.ListJobsRequest(filter=jobs_pb2.JobFilter(ids=[one])),
                          timeout=10)
    assert [job.id for job in by_id.jobs] == [one]


def test_a_resumed_watch_gets_what_it_missed_without_a_snapshot(
        server: ServerProcess, channel: grpc.Channel) -> None:
    stream = watch_jobs(channel)
    synced = stream.until(lambda m: m.kind == JobKind.KIND_SYNCED)[-1]
    first = submit(channel, "true")
    last = stream.until(final(first))[-1]
    stream.close()
    assert last.revision >= synced.revision
    missed = [submit(channel, "true") for _ in range(3)]
    stream = watch_jobs(channel, after_revision=last.revision)
    try:
        got: dict[str, int] = {}

        def all_final(message: Any) -> bool:
            assert message.kind == JobKind.KIND_UPSERT, message
            got[message.job.id] = message.job.state
            return all(got.get(j) == jobs_pb2.JOB_STATE_SUCCEEDED for j in missed)

        stream.until(all_final)
        assert first not in got  # nothing from before the resume point comes again
    finally:
        stream.close()


def _event_key(event: events_pb2.Event) -> tuple[int, int]:
    return event.revision, event.id


def test_events_follow_resumes_without_gap_or_repeat_across_a_restart(
        server: ServerProcess, channel: grpc.Channel) -> None:
    submit(channel, "true")
    stream = Stream(events(channel, follow=True))
    received: list[events_pb2.Event] = []
    try:
        received += stream.until(lambda e: e.type == "job.succeeded")
    finally:
        stream.close()
    # Written while nobody follows, some of them by another server process.
    wait_final(channel, submit(channel, "true"))
    server.stop()
    server.start()
    with server.channel() as fresh:
        submit(fresh, "true")
        last = received[-1]
        stream = Stream(events(fresh, follow=True, after_revision=last.revision,
                               after_id=last.id))
        succeeded = 0

        def second_success(event: events_pb2.Event) -> bool:
            nonlocal succeeded
            succeeded += event.type == "job.succeeded"
            return succeeded == 2

        try:
            received += stream.until(second_success)
        finally:
            stream.close()
        everything = list(events(fresh, limit=100_000))
    keys = [_event_key(e) for e in received]
    assert keys == sorted(keys) and len(set(keys)) == len(keys), "an event came twice"
    # Every event of the trail up to the last one received, none left out.
    upto = [e for e in everything if _event_key(e) <= keys[-1]]
    assert [e.id for e in upto] == [e.id for e in received]
    assert sum(e.type == "job.succeeded" for e in received) == 3


def test_a_watcher_that_does_not_read_is_reset_to_the_latest_state(
        tmp_path: Path, database_url: str) -> None:
    server = ServerProcess(tmp_path, database_url, workers=1,
                           extra_config="watch_buffer = 20").start()
    try:
        with server.channel() as channel, narrow_channel(server) as narrow:
            call = jobs_pb2_grpc.JobServiceStub(narrow).WatchJobs(jobs_pb2.WatchJobsRequest())
            stub = jobs_pb2_grpc.JobServiceStub(channel)
            first = next(call)  # the stream is open; now stop reading
            assert first.kind == JobKind.KIND_SYNCED
            # Never placed (no worker matches), so each job changes twice: created,
            # cancelled. Big enough messages to fill the transport's windows.
            padding = {"PAD": "x" * 4096}
            ids = [submit(channel, "true", selector={"nowhere": "1"}, env=padding)
                   for _ in range(300)]
            for job_id in ids:
                stub.CancelJob(jobs_pb2.CancelJobRequest(id=job_id), timeout=10)
            kinds: list[int] = []
            state: dict[str, int] = {}
            deadline = time.monotonic() + 60
            for message in call:
                kinds.append(message.kind)
                if message.kind == JobKind.KIND_RESET:
                    state.clear()
                elif message.kind in (JobKind.KIND_SNAPSHOT, JobKind.KIND_UPSERT):
                    state[message.job.id] = message.job.state
                if (message.kind != JobKind.KIND_SNAPSHOT and len(state) == len(ids)
                        and all(s == jobs_pb2.JOB_STATE_CANCELLED for s in state.values())):
                    break
                assert time.monotonic() < deadline, "the watcher never caught up"
            call.cancel()
            assert JobKind.KIND_RESET in kinds
            after_reset = kinds[kinds.index(JobKind.KIND_RESET) + 1:]
            assert JobKind.KIND_SYNCED in after_reset  # a fresh snapshot followed
    finally:
        server.stop()


def test_an_events_follower_that_does_not_read_is_cut_off(
        tmp_path: Path, database_url: str) -> None:
    server = ServerProcess(tmp_path, database_url, workers=1,
                           extra_config="watch_buffer = 20").start()
    try:
        with server.channel() as channel, narrow_channel(server) as narrow:
            submit(channel, "true", selector={"nowhere": "1"})
            call = events(narrow, follow=True, filter=events_pb2.EventFilter(types=["job"]))
            next(call)
            padding = {"PAD": "x" * 4096}
            stub = jobs_pb2_grpc.JobServiceStub(channel)
            for _ in range(600):
                job_id = submit(channel, "true", selector={"nowhere": "1"}, env=padding)
                stub.CancelJob(jobs_pb2.CancelJobRequest(id=job_id, reason="r" * 1000),
                               timeout=10)
            with pytest.raises(grpc.RpcError) as raised:
                for _ in call:
                    pass
            assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "resume after revision" in (raised.value.details() or "")
    finally:
        server.stop()


def test_every_event_of_a_job_carries_its_correlation_id(server: ServerProcess,
                                                         channel: grpc.Channel) -> None:
    by_field = submit(channel, "true", correlation_id="deploy-42")
    by_header = submit(channel, "true", metadata=(("x-correlation-id", "req-7"),))
    for job_id, correlation in ((by_field, "deploy-42"), (by_header, "req-7")):
        stream = Stream(events(channel, follow=True,
                               filter=events_pb2.EventFilter(job_id=job_id)))
        try:
            seen = stream.until(lambda e: e.type == "job.succeeded")
        finally:
            stream.close()
        assert [e.type for e in seen] == ["job.created", "job.assigned", "job.running",
                                          "job.succeeded"]
        assert {e.correlation_id for e in seen} == {correlation}
        chosen = list(events(channel, filter=events_pb2.EventFilter(
            correlation_id=correlation)))
        assert [e.id for e in chosen] == [e.id for e in seen]


def test_audit_events_reach_administrators_only(server: ServerProcess) -> None:
    viewer = create_api_token(server.database_url, "watcher", role="viewer")
    with token_channel(server.address, viewer) as channel:
        # A refusal is audited: a viewer may not submit.
        with pytest.raises(grpc.RpcError):
            submit(channel, "true")
        assert not [e for e in events(channel) if e.type.startswith("audit.")]
    with server.channel() as admin:
        audit = list(events(admin, filter=events_pb2.EventFilter(types=["audit"])))
    assert any(e.actor == "token:watcher" and e.type.endswith("SubmitJob") for e in audit)


def test_watch_workers_sends_the_fleet_then_its_changes(server: ServerProcess,
                                                        channel: grpc.Channel) -> None:
    stub = workers_pb2_grpc.WorkerServiceStub(channel)
    stream = Stream(stub.WatchWorkers(workers_pb2.WatchWorkersRequest()))
    Kind = workers_pb2.WatchWorkersResponse
    try:
        snapshot = stream.until(lambda m: m.kind == Kind.KIND_SYNCED)
        workers = [m.worker for m in snapshot if m.kind == Kind.KIND_SNAPSHOT]
        assert len(workers) == server.workers
        stub.DrainWorker(workers_pb2.DrainWorkerRequest(id=workers[0].id), timeout=10)
        # An idle worker drains at once: it may be gone (TERMINATED) by the next read.
        stream.until(lambda m: m.worker.id == workers[0].id and (
            m.kind == Kind.KIND_REMOVED
            or m.worker.state == workers_pb2.WORKER_STATE_DRAINING))
        # Heartbeats move last_heartbeat_at without an event; the watcher sees them too.
        other = workers[1]
        beat = stream.until(lambda m: m.kind == Kind.KIND_UPSERT and m.worker.id == other.id
                            and m.worker.last_heartbeat_at.ToDatetime()
                            > other.last_heartbeat_at.ToDatetime())
        assert beat
    finally:
        stream.close()
