"""The scheduling model: jobs, candidate workers, strategies and the capacity-safe placer.

The placer, not the strategy, guarantees capacity: for each job it offers the strategy only
the workers that fit it *now* (labels match the selector; a free slot; enough free cpus and
memory, counting what this round has already placed) and ignores any answer that is not one
of them. So no strategy — built in or third party — can over-commit a worker.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

log = logging.getLogger(__name__)

# Job labels that steer scheduling (see README "Scheduling strategies").
STRATEGY_LABEL = "hodei.io/strategy"
# `affinity.hodei.io/<worker label key>: <value>` prefers workers with that label (soft);
# `anti-affinity.hodei.io/<worker label key>: <value>` avoids them (hard). "" = any value.
AFFINITY_PREFIX = "affinity.hodei.io/"
ANTI_AFFINITY_PREFIX = "anti-affinity.hodei.io/"
DEFAULT_STRATEGY = "least-loaded"
_EPSILON = 1e-9


@dataclass(frozen=True)
class JobRequest:
    """What a strategy knows about a pending job."""

    id: uuid.UUID
    selector: Mapping[str, str] = field(default_factory=dict)
    cpus: float = 0.0
    memory_mb: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class WorkerView:
    """A connected worker and what it has free at this point of the round."""

    worker_id: uuid.UUID
    name: str = ""
    provider: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    slots: int = 1
    free_slots: int = 1
    free_cpus: float = float("inf")
    free_memory_mb: int = 2**62

    @property
    def running(self) -> int:
        return self.slots - self.free_slots

    def fits(self, job: JobRequest) -> bool:
        return (
            self.free_slots > 0
            and job.cpus <= self.free_cpus + _EPSILON
            and job.memory_mb <= self.free_memory_mb
            and all(self.labels.get(k) == v for k, v in job.selector.items())
        )


class Strategy(Protocol):
    """Picks one of the candidates (all of which fit the job), or None to leave it pending."""

    name: ClassVar[str]

    def choose(self, job: JobRequest, candidates: Sequence[WorkerView]) -> WorkerView | None:
        ...


def terms(labels: Mapping[str, str], prefix: str) -> dict[str, str]:
    """The worker-label terms under `prefix` in a job's labels: `{key: value or ""}`."""
    return {k.removeprefix(prefix): v for k, v in labels.items()
            if k.startswith(prefix) and len(k) > len(prefix)}


def matches(labels: Mapping[str, str], key: str, value: str) -> bool:
    """The worker labels have `key`, with `value` (any value when `value` is "")."""
    return key in labels and (value == "" or labels[key] == value)


def has_affinity(labels: Mapping[str, str]) -> bool:
    return any(k.startswith((AFFINITY_PREFIX, ANTI_AFFINITY_PREFIX)) for k in labels)


class Scheduler:
    """Chooses a strategy per job and places jobs without over-committing any worker.

    The strategy for a job: its `hodei.io/strategy` label; else `affinity` when it carries
    (anti-)affinity labels; else the `strategy` of the provider when every fitting worker comes
    from that one provider; else the default.
    """

    def __init__(
        self,
        strategies: Mapping[str, type],
        default: str = DEFAULT_STRATEGY,
        provider_strategies: Mapping[str, str] | None = None,
    ) -> None:
        self.strategies: dict[str, Strategy] = {n: cls() for n, cls in strategies.items()}
        if default not in self.strategies:
            raise ValueError(f"unknown default strategy {default!r}")
        self.default = default
        self.provider_strategies = {
            k: v for k, v in (provider_strategies or {}).items() if v
        }
        self._warned: set[str] = set()

    def _named(self, name: str, why: str) -> Strategy | None:
        strategy = self.strategies.get(name)
        if strategy is None and name not in self._warned:
            self._warned.add(name)
            log.warning("unknown scheduling strategy %r (%s); using %r", name, why,
                        self.default)
        return strategy

    def strategy_for(self, job: JobRequest, candidates: Sequence[WorkerView]) -> Strategy:
        named = job.labels.get(STRATEGY_LABEL)
        if named:
            found = self._named(named, f"label {STRATEGY_LABEL} of job {job.id}")
            if found is not None:
                return found
        elif has_affinity(job.labels) and "affinity" in self.strategies:
            return self.strategies["affinity"]
        else:
            providers = {c.provider for c in candidates}
            if len(providers) == 1:
                name = self.provider_strategies.get(providers.pop())
                if name:
                    found = self._named(name, "provider strategy")
                    if found is not None:
                        return found
        return self.strategies[self.default]

    def place(
        self, jobs: Sequence[JobRequest], workers: Sequence[WorkerView]
    ) -> list[tuple[uuid.UUID, uuid.UUID]]:
        """(job id, worker id) for each job that could be placed, in job order."""
        current = {w.worker_id: w for w in workers}
        placements: list[tuple[uuid.UUID, uuid.UUID]] = []
        for job in jobs:
            candidates = [w for w in current.values() if w.fits(job)]
            if not candidates:
                continue
            strategy = self.strategy_for(job, candidates)
            try:
                chosen = strategy.choose(job, candidates)
            except Exception:
                log.exception("scheduling strategy %r failed for job %s", strategy.name, job.id)
                continue
            if chosen is None:
                continue
            if not any(chosen.worker_id == c.worker_id for c in candidates):
                log.warning("scheduling strategy %r chose a worker that does not fit job %s",
                            strategy.name, job.id)
                continue
            worker = current[chosen.worker_id]
            current[worker.worker_id] = dataclasses.replace(
                worker,
                free_slots=worker.free_slots - 1,
                free_cpus=worker.free_cpus - job.cpus,
                free_memory_mb=worker.free_memory_mb - job.memory_mb,
            )
            placements.append((job.id, worker.worker_id))
        return placements
