"""Why a pending job is not placed: the leader's reconciler says it in the job's row.

A job that waited a moment is checked against what placement looks at: the live workers
(their labels, size and load, as the workers table has them) and the providers that could
start more. The reason reads as a person would ask:

- "no worker matches os=linux, and no provider starts one"
- "no worker matching os=linux has 8 CPUs and 512 MiB"
- "all 2 workers matching os=linux are busy (8 of 8 slots in use)"
- "waiting for provider docker to start a worker"
- "provider local is at its maximum of 2 workers"

"" means nothing keeps the job from its next placement round. A job's `hodei.io/strategy`
label naming no registered strategy is refused at submit, so it never waits for that.

The jobs are explained in queue order, and a free slot counts for the first job it fits
only: the jobs behind it wait for the workers being busy, as they do. So a deep queue's
reasons hold still while slots free up and fill again (each change is a row written and a
`job.waiting` event), and only the few jobs at its head ever read "".
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hodei_server.store.jobs import JobStore
from hodei_server.store.sqlfiles import query

# A job this new has not had its first placement round yet: nothing to explain.
GRACE_SECONDS = 2.0
BATCH = 1000
WRITE_CHUNK = 100
ACCEPTING = frozenset({"READY", "BUSY"})


@dataclass(frozen=True)
class WorkerInfo:
    name: str
    labels: Mapping[str, str]
    slots: int
    cpus: float
    memory_mb: int
    running_jobs: int
    state: str


@dataclass(frozen=True)
class ProviderInfo:
    name: str
    labels: Mapping[str, str]  # with provider=<name>, as its workers get
    cpus: float  # 0: not sized
    memory_mb: int
    active: int  # workers started or adopted, not draining
    max_workers: int

    def could_start_for(self, selector: Mapping[str, str], cpus: float, memory_mb: int) -> bool:
        if not all(self.labels.get(k) == v for k, v in selector.items()):
            return False
        return not ((self.cpus and cpus > self.cpus)
                    or (self.memory_mb and memory_mb > self.memory_mb))


def _pairs(selector: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items()))


def _needs(cpus: float, memory_mb: int) -> str:
    wanted = []
    if cpus:
        wanted.append(f"{cpus:g} CPU" + ("" if cpus == 1 else "s"))
    if memory_mb:
        wanted.append(f"{memory_mb} MiB")
    return " and ".join(wanted)


def _labelled(worker: WorkerInfo, selector: Mapping[str, str]) -> bool:
    return all(worker.labels.get(k) == v for k, v in selector.items())


def _big_enough(worker: WorkerInfo, cpus: float, memory_mb: int) -> bool:
    return ((not worker.cpus or cpus <= worker.cpus)
            and (not worker.memory_mb or memory_mb <= worker.memory_mb))


def reason(selector: Mapping[str, str], cpus: float, memory_mb: int,
           workers: Sequence[WorkerInfo], providers: Sequence[ProviderInfo]) -> str:
    """Why a job with these needs is not placed; "" when something can take it now."""
    labelled = [w for w in workers if _labelled(w, selector)]
    fitting = [w for w in labelled if _big_enough(w, cpus, memory_mb)]
    starters = [p for p in providers if p.could_start_for(selector, cpus, memory_mb)]
    growing = [p for p in starters if p.active < p.max_workers]
    matching = f"matching {_pairs(selector)}" if selector else "connected"
    matching_has = f"matching {_pairs(selector)} " if selector else ""
    accepting = [w for w in fitting if w.state in ACCEPTING]
    if any(w.running_jobs < w.slots for w in accepting):
        return ""
    if growing:
        return f"waiting for provider {growing[0].name} to start a worker"
    if fitting:
        used = sum(min(w.running_jobs, w.slots) for w in accepting)
        total = sum(w.slots for w in accepting)
        draining = len(fitting) - len(accepting)
        who = (f"all {len(fitting)} workers {matching} are" if len(fitting) != 1
               else f"the one worker {matching} is")
        text = (f"{who} busy ({used} of {total} slots in use"
                + (f"; {draining} draining" if draining else "") + ")")
    elif labelled:
        return (f"no worker {matching_has}has {_needs(cpus, memory_mb)}"
                + _providers_note(starters, providers, selector))
    elif selector:
        text = f"no worker matches {_pairs(selector)}"
    else:
        text = "no worker is connected"
    return text + _providers_note(starters, providers, selector)


def _promise_slot(workers: Sequence[WorkerInfo], selector: Mapping[str, str], cpus: float,
                  memory_mb: int) -> list[WorkerInfo]:
    """`workers` with one slot taken on the accepting worker that fits with the most free
    (the one placement would pick): the slot a job at the head of the queue is next for."""
    fitting = [w for w in workers if w.state in ACCEPTING and w.running_jobs < w.slots
               and _labelled(w, selector) and _big_enough(w, cpus, memory_mb)]
    if not fitting:
        return list(workers)
    taken = max(fitting, key=lambda w: w.slots - w.running_jobs)
    return [dataclasses.replace(w, running_jobs=w.running_jobs + 1) if w is taken else w
            for w in workers]


def _providers_note(starters: Sequence[ProviderInfo], providers: Sequence[ProviderInfo],
                    selector: Mapping[str, str]) -> str:
    if starters:  # all at their maximum (a growing one was said before)
        first = starters[0]
        return (f"; provider {first.name} is at its maximum of {first.max_workers} "
                f"worker{'s' if first.max_workers != 1 else ''}")
    if providers:
        return ", and no provider starts one"
    return ""


def provider_infos(runtimes: Iterable[Any], registry: Any) -> list[ProviderInfo]:
    """What the reconciler's provider runtimes can start, and how many they run."""
    infos = []
    for runtime in runtimes:
        config = runtime.config
        sessions = [s for s in registry.all() if s.provider == config.name]
        active = max(len([i for i in runtime.started.values() if not i.draining]),
                     len([s for s in sessions if not s.draining]))
        infos.append(ProviderInfo(
            name=config.name, labels={**config.labels, "provider": config.name},
            cpus=float(getattr(config, "cpus", 0) or 0),
            memory_mb=int(getattr(config, "memory_mb", 0) or 0),
            active=active, max_workers=config.max_workers))
    return infos


def queue_reasons(pending: Sequence[Mapping[str, Any]], workers: Sequence[WorkerInfo],
                  providers: Sequence[ProviderInfo], now: dt.datetime) -> list[str]:
    """The reason of each of `pending` (rows in queue order: selector, cpus, memory_mb,
    not_before), a free slot counting for the first job it fits only."""
    texts = []
    for job in pending:
        if job["not_before"] > now:
            texts.append("waiting to be retried after a backoff")
            continue
        needs = (job["selector"] or {}, job["cpus"], job["memory_mb"])
        text = reason(*needs, workers, providers)
        if not text:
            workers = _promise_slot(workers, *needs)
        texts.append(text)
    return texts


async def explain(jobs: JobStore, providers: Sequence[ProviderInfo], actor: str) -> int:
    """Set the waiting reason of every pending job that waited a moment; how many changed
    are not counted, the number of jobs looked at is returned."""
    async with jobs.pool.connection() as conn:
        cur = await conn.execute(query("waiting_jobs"), {"grace": GRACE_SECONDS,
                                                         "limit": BATCH})
        pending = await cur.fetchall()
        if not pending:
            return 0
        cur = await conn.execute(query("placement_workers"))
        workers = [WorkerInfo(name=r["name"], labels=r["labels"] or {}, slots=r["slots"],
                              cpus=r["cpus"], memory_mb=r["memory_mb"],
                              running_jobs=r["running_jobs"], state=r["state"])
                   for r in await cur.fetchall()]
    ids, reasons = [], []
    texts = queue_reasons(pending, workers, providers, dt.datetime.now(dt.UTC))
    for job, text in zip(pending, texts, strict=True):
        if text != job["waiting_reason"]:
            ids.append(job["id"])
            reasons.append(text)
    if ids:
        async with jobs.pool.connection() as conn:
            # A few rows a statement: each holds its rows' locks until it commits, and an
            # assignment of one of them waits that long (100 ms for 1,000 rows, measured).
            for start in range(0, len(ids), WRITE_CHUNK):
                await conn.execute(query("set_waiting_reasons"), {
                    "ids": ids[start:start + WRITE_CHUNK],
                    "reasons": reasons[start:start + WRITE_CHUNK], "actor": actor})
    return len(pending)
