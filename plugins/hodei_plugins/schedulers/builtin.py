"""The built-in scheduling strategies. Each sees only workers that fit the job."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import ClassVar

from hodei_plugins.schedulers.base import (
    AFFINITY_PREFIX,
    ANTI_AFFINITY_PREFIX,
    JobRequest,
    WorkerView,
    matches,
    terms,
)


class FirstAvailable:
    """The first fitting worker, in the order the server lists them."""

    name: ClassVar[str] = "first-available"

    def choose(self, job: JobRequest, candidates: Sequence[WorkerView]) -> WorkerView | None:
        return candidates[0] if candidates else None


class LeastLoaded:
    """The fitting worker with the most free slots (the first one on a tie)."""

    name: ClassVar[str] = "least-loaded"

    def choose(self, job: JobRequest, candidates: Sequence[WorkerView]) -> WorkerView | None:
        best: WorkerView | None = None
        for worker in candidates:
            if best is None or worker.free_slots > best.free_slots:
                best = worker
        return best


class MostCapacity:
    """The fitting worker with the most free cpus, then memory, then slots (bin spreading)."""

    name: ClassVar[str] = "most-capacity"

    def choose(self, job: JobRequest, candidates: Sequence[WorkerView]) -> WorkerView | None:
        if not candidates:
            return None
        return max(candidates, key=lambda w: (w.free_cpus, w.free_memory_mb, w.free_slots))


class RoundRobin:
    """Takes turns: the fitting worker after the one chosen last (by worker id)."""

    name: ClassVar[str] = "round-robin"

    def __init__(self) -> None:
        self._last: uuid.UUID | None = None

    def choose(self, job: JobRequest, candidates: Sequence[WorkerView]) -> WorkerView | None:
        if not candidates:
            return None
        ordered = sorted(candidates, key=lambda w: w.worker_id)
        chosen = ordered[0]
        if self._last is not None:
            chosen = next((w for w in ordered if w.worker_id > self._last), ordered[0])
        self._last = chosen.worker_id
        return chosen


class LabelAffinity:
    """Job labels `affinity.hodei.io/K: V` prefer workers labelled K=V (soft, the more
    matches the better); `anti-affinity.hodei.io/K: V` never place on a worker labelled
    K=V (hard). An empty V matches any value. Ties go to the most free slots.
    """

    name: ClassVar[str] = "affinity"

    def choose(self, job: JobRequest, candidates: Sequence[WorkerView]) -> WorkerView | None:
        prefer = terms(job.labels, AFFINITY_PREFIX)
        avoid = terms(job.labels, ANTI_AFFINITY_PREFIX)
        allowed = [
            w for w in candidates if not any(matches(w.labels, k, v) for k, v in avoid.items())
        ]
        best: WorkerView | None = None
        best_key: tuple[int, int] = (-1, -1)
        for worker in allowed:
            key = (sum(matches(worker.labels, k, v) for k, v in prefer.items()),
                   worker.free_slots)
            if key > best_key:
                best, best_key = worker, key
        return best


BUILTIN_STRATEGIES: list[type] = [FirstAvailable, LeastLoaded, MostCapacity, RoundRobin,
                                  LabelAffinity]
