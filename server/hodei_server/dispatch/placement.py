"""Placing claimed jobs on this replica's agents, through the registered strategies."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from hodei_api.v1 import jobs_pb2
from hodei_plugins.manager import get_host
from hodei_plugins.schedulers import (
    DEFAULT_STRATEGY,
    STRATEGY_LABEL,
    JobRequest,
    Scheduler,
    WorkerView,
)
from hodei_plugins.schedulers.builtin import LeastLoaded
from hodei_server.config import ServerConfig
from hodei_server.dispatch.session import AgentSession
from hodei_server.errors import ConfigError, InvalidSpec
from hodei_server.store.jobs import Claimed


def job_request(job: Claimed) -> JobRequest:
    labels = dict(jobs_pb2.JobSpec.FromString(job.spec_bytes).labels)
    return JobRequest(job.id, job.selector, job.cpus, job.memory_mb, labels)


def worker_view(session: AgentSession) -> WorkerView:
    return WorkerView(
        worker_id=session.worker_id, name=session.name, provider=session.provider,
        labels=session.labels, slots=session.slots, free_slots=session.free_slots,
        free_cpus=session.free_cpus, free_memory_mb=session.free_memory_mb,
    )


def check_strategy_label(labels: dict[str, str] | object) -> None:
    """Refuse a job whose `hodei.io/strategy` label names no registered strategy: it would
    otherwise be placed by the default one, quietly."""
    named = getattr(labels, "get", lambda _: None)(STRATEGY_LABEL)
    if not named:
        return
    strategies = get_host().strategies()
    if named not in strategies:
        known = ", ".join(sorted(strategies)) or "none"
        raise InvalidSpec(f"label {STRATEGY_LABEL}: no scheduling strategy {named!r} "
                          f"(this server has: {known})")


def build_scheduler(config: ServerConfig) -> Scheduler:
    """A scheduler with the registered strategies and the configured defaults."""
    strategies = get_host().strategies()
    if config.strategy not in strategies:
        known = ", ".join(sorted(strategies)) or "none; is the 'strategies' plugin disabled?"
        raise ConfigError(f"unknown scheduling strategy {config.strategy!r} "
                          f"(registered: {known})")
    return Scheduler(
        strategies,
        default=config.strategy,
        provider_strategies={p.name: p.strategy for p in config.providers},
    )


def place(
    jobs: Sequence[Claimed], sessions: Sequence[AgentSession], scheduler: Scheduler
) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """(job id, worker id) placements; never over-commits slots, cpus or memory."""
    return scheduler.place([job_request(j) for j in jobs], [worker_view(s) for s in sessions])


_LEAST_LOADED = Scheduler({DEFAULT_STRATEGY: LeastLoaded})


def place_new(
    job_id: uuid.UUID, spec: jobs_pb2.JobSpec, sessions: Sequence[AgentSession],
    scheduler: Scheduler | None,
) -> uuid.UUID | None:
    """The agent a job being submitted would go to (by the same strategies as a claimed
    one), or None when none of `sessions` has room for it."""
    request = JobRequest(job_id, dict(spec.selector), spec.resources.cpus,
                         spec.resources.memory_mb, dict(spec.labels))
    placements = (scheduler or _LEAST_LOADED).place(
        [request], [worker_view(s) for s in sessions])
    return placements[0][1] if placements else None


def place_least_loaded(
    jobs: Sequence[Claimed], sessions: Sequence[AgentSession]
) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """Each job on the fitting agent with the most free slots; never over-commits."""
    return place(jobs, sessions, _LEAST_LOADED)
