"""Scheduling strategies: never over-commit, and each picks what it promises."""

from __future__ import annotations

import dataclasses
import uuid
from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hodei_plugins.schedulers import (
    AFFINITY_PREFIX,
    ANTI_AFFINITY_PREFIX,
    BUILTIN_STRATEGIES,
    STRATEGY_LABEL,
    JobRequest,
    Scheduler,
    WorkerView,
)
from hodei_plugins.schedulers.base import matches, terms

NAMES = sorted(cls.name for cls in BUILTIN_STRATEGIES)
REGISTRY = {cls.name: cls for cls in BUILTIN_STRATEGIES}

_label_maps = st.dictionaries(st.sampled_from(["zone", "disk", "gpu"]),
                              st.sampled_from(["a", "b"]), max_size=2)


@st.composite
def workers(draw: st.DrawFn) -> list[WorkerView]:
    count = draw(st.integers(0, 6))
    result = []
    for index in range(count):
        slots = draw(st.integers(1, 4))
        cpus = draw(st.sampled_from([0.0, 0.5, 1.0, 2.0, 4.0]))
        memory = draw(st.sampled_from([0, 256, 1024, 4096]))
        result.append(WorkerView(
            worker_id=uuid.UUID(int=index + 1),
            name=f"w{index}",
            provider=draw(st.sampled_from(["local", "other"])),
            labels=draw(_label_maps),
            slots=slots,
            free_slots=draw(st.integers(0, slots)),
            free_cpus=float("inf") if cpus == 0 else draw(st.sampled_from([0.0, 0.25, cpus])),
            free_memory_mb=2**62 if memory == 0 else draw(st.sampled_from([0, 100, memory])),
        ))
    return result


@st.composite
def jobs(draw: st.DrawFn) -> list[JobRequest]:
    count = draw(st.integers(0, 20))
    result = []
    for index in range(count):
        labels: dict[str, str] = {}
        if draw(st.booleans()):
            labels[STRATEGY_LABEL] = draw(st.sampled_from([*NAMES, "no-such-strategy"]))
        for prefix in (AFFINITY_PREFIX, ANTI_AFFINITY_PREFIX):
            for key, value in draw(st.dictionaries(st.sampled_from(["zone", "disk", "gpu"]),
                                                   st.sampled_from(["", "a", "b"]),
                                                   max_size=2)).items():
                labels[prefix + key] = value
        result.append(JobRequest(
            id=uuid.UUID(int=1000 + index),
            selector=draw(st.dictionaries(st.sampled_from(["zone", "disk"]),
                                          st.sampled_from(["a", "b"]), max_size=1)),
            cpus=draw(st.sampled_from([0.0, 0.1, 0.25, 0.5, 1.0, 3.0])),
            memory_mb=draw(st.sampled_from([0, 50, 100, 512, 2048])),
            labels=labels,
        ))
    return result


def _check_capacity(
    placements: list[tuple[uuid.UUID, uuid.UUID]], jobs: list[JobRequest],
    workers: list[WorkerView],
) -> None:
    by_job = {j.id: j for j in jobs}
    by_worker = {w.worker_id: w for w in workers}
    placed = [job_id for job_id, _ in placements]
    assert len(placed) == len(set(placed)), "a job was placed twice"
    used: dict[uuid.UUID, list[JobRequest]] = defaultdict(list)
    for job_id, worker_id in placements:
        assert worker_id in by_worker
        used[worker_id].append(by_job[job_id])
    for worker_id, taken in used.items():
        worker = by_worker[worker_id]
        assert len(taken) <= worker.free_slots
        assert sum(j.cpus for j in taken) <= worker.free_cpus + 1e-6
        assert sum(j.memory_mb for j in taken) <= worker.free_memory_mb
        for job in taken:
            assert all(worker.labels.get(k) == v for k, v in job.selector.items())


@pytest.mark.parametrize("default", NAMES)
@settings(max_examples=150, deadline=None)
@given(workers=workers(), jobs=jobs(), provider_strategy=st.sampled_from(["", *NAMES]))
def test_never_over_commits(
    default: str, workers: list[WorkerView], jobs: list[JobRequest], provider_strategy: str
) -> None:
    scheduler = Scheduler(REGISTRY, default=default,
                          provider_strategies={"local": provider_strategy})
    placements = scheduler.place(jobs, workers)
    _check_capacity(placements, jobs, workers)


@settings(max_examples=150, deadline=None)
@given(workers=workers(), jobs=jobs())
def test_anti_affinity_is_hard(workers: list[WorkerView], jobs: list[JobRequest]) -> None:
    scheduler = Scheduler(REGISTRY)
    by_worker = {w.worker_id: w for w in workers}
    by_job = {j.id: j for j in jobs}
    for job_id, worker_id in scheduler.place(jobs, workers):
        job = by_job[job_id]
        if job.labels.get(STRATEGY_LABEL) in (None, "affinity"):
            avoid = terms(job.labels, ANTI_AFFINITY_PREFIX)
            labels = by_worker[worker_id].labels
            assert not any(matches(labels, k, v) for k, v in avoid.items())


@settings(max_examples=100, deadline=None)
@given(workers=workers(), jobs=jobs())
def test_first_available_is_work_conserving(
    workers: list[WorkerView], jobs: list[JobRequest]
) -> None:
    """With first-available, a job is left pending only if no worker fits it any more."""
    plain = [JobRequest(j.id, j.selector, j.cpus, j.memory_mb) for j in jobs]
    scheduler = Scheduler(REGISTRY, default="first-available")
    placements = scheduler.place(plain, workers)
    _check_capacity(placements, plain, workers)
    placed = {job_id for job_id, _ in placements}
    # Replay the placements to know what is left free, then check the unplaced jobs.
    free = {w.worker_id: w for w in workers}
    order = {j.id: j for j in plain}
    placed_on = dict(placements)
    for job in plain:
        if job.id in placed:
            w = free[placed_on[job.id]]
            free[w.worker_id] = dataclasses.replace(
                w, free_slots=w.free_slots - 1, free_cpus=w.free_cpus - job.cpus,
                free_memory_mb=w.free_memory_mb - job.memory_mb)
        else:
            assert not any(w.fits(order[job.id]) for w in free.values())


def _worker(n: int, free_slots: int, **kw: object) -> WorkerView:
    return WorkerView(uuid.UUID(int=n), name=f"w{n}", slots=4, free_slots=free_slots,
                      **kw)  # type: ignore[arg-type]


def _job(n: int, **labels: str) -> JobRequest:
    return JobRequest(uuid.UUID(int=100 + n), labels=labels)


def test_least_loaded_prefers_most_free_slots() -> None:
    placements = Scheduler(REGISTRY).place([_job(1)], [_worker(1, 1), _worker(2, 3)])
    assert placements == [(uuid.UUID(int=101), uuid.UUID(int=2))]


def test_first_available_takes_the_first() -> None:
    scheduler = Scheduler(REGISTRY, default="first-available")
    placements = scheduler.place([_job(1), _job(2)], [_worker(1, 2), _worker(2, 4)])
    assert [w for _, w in placements] == [uuid.UUID(int=1), uuid.UUID(int=1)]


def test_round_robin_takes_turns() -> None:
    scheduler = Scheduler(REGISTRY, default="round-robin")
    placements = scheduler.place([_job(i) for i in range(4)],
                                 [_worker(1, 4), _worker(2, 4)])
    assert [w.int for _, w in placements] == [1, 2, 1, 2]


def test_most_capacity_prefers_most_free_cpus() -> None:
    scheduler = Scheduler(REGISTRY, default="most-capacity")
    workers = [_worker(1, 4, free_cpus=1.0), _worker(2, 1, free_cpus=8.0)]
    assert scheduler.place([_job(1)], workers)[0][1].int == 2


def test_affinity_prefers_and_anti_affinity_excludes() -> None:
    workers = [_worker(1, 4, labels={"zone": "a"}), _worker(2, 1, labels={"zone": "b"}),
               _worker(3, 4, labels={"gpu": "yes"})]
    scheduler = Scheduler(REGISTRY)
    prefer = _job(1, **{AFFINITY_PREFIX + "zone": "b"})
    avoid = _job(2, **{ANTI_AFFINITY_PREFIX + "zone": "", ANTI_AFFINITY_PREFIX + "gpu": ""})
    placements = dict(scheduler.place([prefer, avoid], workers))
    assert placements[prefer.id].int == 2
    assert avoid.id not in placements  # every worker has zone or gpu


def test_job_label_then_provider_then_default() -> None:
    scheduler = Scheduler(REGISTRY, provider_strategies={"p": "round-robin"})
    only_p = [_worker(1, 1, provider="p")]
    mixed = [*only_p, _worker(2, 1, provider="q")]
    assert scheduler.strategy_for(_job(1, **{STRATEGY_LABEL: "most-capacity"}),
                                  only_p).name == "most-capacity"
    assert scheduler.strategy_for(_job(1), only_p).name == "round-robin"
    assert scheduler.strategy_for(_job(1), mixed).name == "least-loaded"
    assert scheduler.strategy_for(_job(1, **{STRATEGY_LABEL: "nope"}), mixed).name == (
        "least-loaded")


class _Cheater:
    name = "cheater"

    def choose(self, job: JobRequest, candidates: object) -> WorkerView:
        return _worker(1, 0)  # full, and not a candidate


def test_a_strategy_cannot_pick_a_worker_that_does_not_fit() -> None:
    scheduler = Scheduler({**REGISTRY, "cheater": _Cheater}, default="cheater")
    assert scheduler.place([_job(1)], [_worker(1, 0), _worker(2, 1)]) == []


def test_scheduling_labels_pass_job_label_validation() -> None:
    from hodei_server.validation import validate_labels

    validate_labels({STRATEGY_LABEL: "round-robin", AFFINITY_PREFIX + "disk": "ssd",
                     ANTI_AFFINITY_PREFIX + "gpu": ""}, "labels")
