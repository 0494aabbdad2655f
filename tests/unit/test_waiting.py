"""Why a pending job waits: the words the reconciler writes into its row."""

from __future__ import annotations

import datetime as dt

from hodei_server.dispatch.waiting import ProviderInfo, WorkerInfo, queue_reasons, reason

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
PAST = NOW - dt.timedelta(minutes=1)


def worker(labels: dict[str, str], running: int = 0, slots: int = 4, state: str = "READY",
           cpus: float = 8, memory_mb: int = 16384) -> WorkerInfo:
    return WorkerInfo(name="w", labels=labels, slots=slots, cpus=cpus, memory_mb=memory_mb,
                      running_jobs=running, state=state)


def provider(name: str, labels: dict[str, str], active: int, max_workers: int,
             cpus: float = 0) -> ProviderInfo:
    return ProviderInfo(name=name, labels={**labels, "provider": name}, cpus=cpus,
                        memory_mb=0, active=active, max_workers=max_workers)


LOCAL_FULL = provider("local", {}, active=2, max_workers=2)


def test_no_worker_matches_the_selector() -> None:
    workers = [worker({"os": "darwin"})]
    assert reason({"os": "linux"}, 0, 0, workers, [LOCAL_FULL]) == (
        "no worker matches os=linux, and no provider starts one")
    assert reason({"os": "linux"}, 0, 0, workers, []) == "no worker matches os=linux"
    assert reason({}, 0, 0, [], []) == "no worker is connected"


def test_every_matching_worker_is_full() -> None:
    workers = [worker({"os": "linux"}, running=4), worker({"os": "linux"}, running=4),
               worker({"os": "linux"}, state="DRAINING")]
    assert reason({"os": "linux"}, 0, 0, workers, []) == (
        "all 3 workers matching os=linux are busy (8 of 8 slots in use; 1 draining)")
    assert reason({}, 0, 0, workers[:1], [LOCAL_FULL]) == (
        "the one worker connected is busy (4 of 4 slots in use); provider local is at its "
        "maximum of 2 workers")


def test_a_free_slot_means_no_reason() -> None:
    assert reason({"os": "linux"}, 0, 0, [worker({"os": "linux"}, running=3)], []) == ""


def test_a_provider_that_can_grow_is_waited_for() -> None:
    docker = provider("docker", {"os": "linux"}, active=1, max_workers=4)
    assert reason({"os": "linux"}, 0, 0, [], [LOCAL_FULL, docker]) == (
        "waiting for provider docker to start a worker")


def test_a_provider_at_its_maximum_is_named() -> None:
    docker = provider("docker", {"os": "linux"}, active=4, max_workers=4)
    assert reason({"os": "linux"}, 0, 0, [], [docker]) == (
        "no worker matches os=linux; provider docker is at its maximum of 4 workers")


def test_a_job_bigger_than_every_matching_worker() -> None:
    workers = [worker({"os": "linux"}, cpus=4, memory_mb=1024)]
    assert reason({"os": "linux"}, 8, 512, workers, [LOCAL_FULL]) == (
        "no worker matching os=linux has 8 CPUs and 512 MiB, and no provider starts one")
    assert reason({}, 1, 4096, workers, []) == "no worker has 1 CPU and 4096 MiB"


def _queued(count: int, selector: dict[str, str] | None = None,
            not_before: dt.datetime = PAST) -> list[dict[str, object]]:
    return [{"selector": selector or {}, "cpus": 0, "memory_mb": 0, "not_before": not_before}
            for _ in range(count)]


def test_a_free_slot_is_for_the_head_of_the_queue_only() -> None:
    workers = [worker({}, running=3)]
    assert queue_reasons(_queued(4), workers, [], NOW) == [""] + [
        "the one worker connected is busy (4 of 4 slots in use)"] * 3


def test_a_deep_queue_says_the_same_while_slots_free_up_and_fill() -> None:
    """Each change is a row written and an event: the jobs behind the head hold still."""
    full = queue_reasons(_queued(50), [worker({}, running=4), worker({}, running=4)], [], NOW)
    freed = queue_reasons(_queued(50), [worker({}, running=2), worker({}, running=3)], [], NOW)
    assert freed[:3] == ["", "", ""]
    assert freed[3:] == full[3:] == [
        "all 2 workers connected are busy (8 of 8 slots in use)"] * 47


def test_a_slot_goes_to_the_first_job_it_fits() -> None:
    workers = [worker({"os": "linux"}, running=3, slots=4)]
    jobs = _queued(1, {"os": "plan9"}) + _queued(2, {"os": "linux"})
    assert queue_reasons(jobs, workers, [], NOW) == [
        "no worker matches os=plan9", "",
        "the one worker matching os=linux is busy (4 of 4 slots in use)"]


def test_a_job_in_backoff_takes_no_slot() -> None:
    later = NOW + dt.timedelta(seconds=30)
    jobs = _queued(1, not_before=later) + _queued(1)
    assert queue_reasons(jobs, [worker({}, running=3)], [], NOW) == [
        "waiting to be retried after a backoff", ""]
