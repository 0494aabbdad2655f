"""Placing claimed jobs on this replica's agents."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from hodei_server.agents import AgentSession
from hodei_server.jobstore import Claimed


def place_least_loaded(
    jobs: Sequence[Claimed], sessions: Sequence[AgentSession]
) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """Each job on the fitting agent with the most free slots; never over-commits.

    Capacity is tracked locally for this round, so the placements never exceed what
    each agent has free even before the reservations are made.
    """
    free_slots = {s.worker_id: s.free_slots for s in sessions}
    free_cpus = {s.worker_id: s.free_cpus for s in sessions}
    free_mem = {s.worker_id: s.free_memory_mb for s in sessions}
    placements: list[tuple[uuid.UUID, uuid.UUID]] = []
    for job in jobs:
        best: AgentSession | None = None
        for session in sessions:
            wid = session.worker_id
            if (
                free_slots[wid] > 0
                and job.cpus <= free_cpus[wid] + 1e-9
                and job.memory_mb <= free_mem[wid]
                and all(session.labels.get(k) == v for k, v in job.selector.items())
                and (best is None or free_slots[wid] > free_slots[best.worker_id])
            ):
                best = session
        if best is None:
            continue
        wid = best.worker_id
        free_slots[wid] -= 1
        free_cpus[wid] -= job.cpus
        free_mem[wid] -= job.memory_mb
        placements.append((job.id, wid))
    return placements
