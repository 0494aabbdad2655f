"""How jobs and workers are shown: their table columns and rows, and `job get`'s page."""

from __future__ import annotations

import shlex
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from hodeictl import table
from hodeictl.output import (
    OutputFormat,
    age,
    echo,
    exit_code_text,
    job_state,
    job_to_dict,
    local_time,
    pairs,
    print_fields,
    print_listing,
    what,
    worker_state,
    worker_to_dict,
)
from hodeictl.table import Column

if TYPE_CHECKING:
    from hodei_api.v1 import events_pb2, jobs_pb2, workers_pb2


def _secrets(spec: jobs_pb2.JobSpec) -> str:
    """Names and how each reaches the process; a value is never in a spec."""
    if not spec.secrets:
        return "-"
    parts = []
    for ref in spec.secrets:
        extra = [f"env {ref.as_env}"] if ref.as_env else []
        if ref.as_file:
            extra.append(f"file {ref.as_file}")
        parts.append(ref.name + (f" ({', '.join(extra)})" if extra else ""))
    return ", ".join(parts) + f"; delivery: {spec.secret_delivery or 'file'}"


def _resources(resources: jobs_pb2.Resources) -> str:
    wanted = []
    if resources.cpus:
        wanted.append(f"cpus={resources.cpus:g}")
    if resources.memory_mb:
        wanted.append(f"memory_mb={resources.memory_mb}")
    return " ".join(wanted) or "-"


def attempt_text(job: jobs_pb2.Job) -> str:
    """`2/3`: the attempt and how many it may have. A job run again by `job retry` has more
    attempts than its spec allowed; the total shown is never below the attempt."""
    return f"{job.attempt}/{max(job.spec.max_attempts, 1, job.attempt)}"


JOB_COLUMNS = (
    Column("ID"),  # as short as keeps the jobs shown apart (hodeictl.resolve takes it)
    Column("NAME", shrink=2, min_width=16),
    Column("STATE", coloured=True),
    Column("EXIT", priority=2, right=True),
    Column("ATTEMPT", priority=3),
    Column("AGE", priority=1),
    Column("COMMAND", priority=4, shrink=1, min_width=16),
    Column("LABELS", priority=5, shrink=1, min_width=12, wide=True),
    Column("WORKER", priority=6, wide=True),
    Column("REASON", priority=7, shrink=1, min_width=16, wide=True),
)


def job_row(job: jobs_pb2.Job, now: float | None = None, id_length: int = 36) -> list[str]:
    """A job's cells, in the order of JOB_COLUMNS; its id cut to `id_length`."""
    return [
        job.id[:id_length],
        job.spec.name or "-",
        job_state(job.state),
        exit_code_text(job.has_exit_code, job.exit_code),
        attempt_text(job),
        age(job, "created_at", now),
        what(job.spec),
        pairs(job.spec.labels),
        job.worker_id or "-",
        job.reason or (f"waiting: {job.waiting_reason}" if job.waiting_reason else "-"),
    ]


def print_jobs(jobs: Sequence[jobs_pb2.Job], output_format: OutputFormat = OutputFormat.table,
               *, no_headers: bool = False, quiet: bool = False) -> None:
    """The job list, in `output_format`."""
    from hodeictl.resolve import short_length

    now = time.time()
    # `-o wide` shows whole ids; a table the shortest that keep these jobs apart.
    length = 36 if output_format is OutputFormat.wide else short_length([j.id for j in jobs])
    print_listing(output_format, jobs, columns=JOB_COLUMNS,
                  row=lambda j: job_row(j, now, length),
                  data=job_to_dict, ident=lambda j: j.id, kind="job",
                  no_headers=no_headers, quiet=quiet)


def print_job(job: jobs_pb2.Job, events: Sequence[events_pb2.Event] | None = None,
              events_note: str = "") -> None:
    """One job: its fields, its attempts, then its events (`events_note` says why there
    are none, or that older ones were left out)."""
    from hodeictl import jobflow

    spec = job.spec
    rows: list[tuple[str, str]] = [
        ("ID", job.id),
        ("Name", spec.name or "-"),
        ("State", job_state(job.state)),
        ("Exit code", exit_code_text(job.has_exit_code, job.exit_code)),
        ("Reason", job.reason or "-"),
        *([("Waiting", job.waiting_reason)] if job.waiting_reason else []),
        ("Worker", job.worker_id or "-"),
        ("Submitted by", job.submitted_by or "-"),
        ("Attempt", f"{job.attempt} of {max(spec.max_attempts, 1, job.attempt)}"),
    ]
    if spec.command:
        rows.append(("Command", shlex.join(spec.command)))
    else:
        rows.append((f"Script ({spec.interpreter or 'sh'})", spec.script.rstrip("\n")))
    rows += [
        ("Working dir", spec.working_dir or "-"),
        ("Env", pairs(spec.env)),
        ("Secrets", _secrets(spec)),
        ("Labels", pairs(spec.labels)),
        ("Selector", pairs(spec.selector)),
        ("Resources", _resources(spec.resources)),
        ("Timeout", f"{spec.timeout_seconds:g}s" if spec.timeout_seconds else "none"),
        ("Created", local_time(job, "created_at")),
        ("Started", local_time(job, "started_at")),
        ("Finished", local_time(job, "finished_at")),
        *jobflow.rows(job),  # template, dependencies, indexes (hodeictl.jobflow)
    ]
    print_fields(rows)
    if job.attempts:
        echo()
        table.print_table(
            (Column("ATTEMPT"), Column("STATE", coloured=True), Column("WORKER", priority=3),
             Column("EXIT", priority=1, right=True), Column("STARTED", priority=4),
             Column("FINISHED", priority=5), Column("REASON", priority=2, shrink=1, min_width=16)),
            [(str(a.attempt), job_state(a.state), a.worker_id or "-",
              exit_code_text(a.has_exit_code, a.exit_code), local_time(a, "started_at"),
              local_time(a, "finished_at"), a.reason or "-") for a in job.attempts])
    if events or events_note:
        echo()
    if events:
        table.print_table(
            # On a narrow terminal who did it goes before what happened is cut short.
            (Column("TIME"), Column("EVENT"), Column("BY", priority=2),
             Column("DETAIL", priority=1, shrink=1, min_width=40)),
            [(local_time(e, "created_at"), e.type.removeprefix("job."), _actor(e.actor),
              event_detail(e)) for e in events])
    if events_note:
        echo(events_note)


def _actor(actor: str) -> str:
    """`worker:c68550f5-afda-...` as `worker:c68550f5` (a table's short id)."""
    kind, colon, ident = actor.partition(":")
    if colon and len(ident) == 36 and ident.count("-") == 4:
        return f"{kind}:{ident[:8]}"
    return actor or "-"


def event_payload(event: events_pb2.Event) -> object:
    """An event's payload as data (its JSON text as it is when it is not JSON)."""
    import json

    try:
        return json.loads(event.payload_json or "{}")
    except ValueError:
        return event.payload_json


def event_to_dict(event: events_pb2.Event) -> dict[str, object]:
    """The JSON form of an event."""
    import datetime

    stamp = event.created_at.ToDatetime(tzinfo=datetime.UTC)
    return {"id": event.id, "revision": event.revision, "time": stamp.isoformat(),
            "type": event.type, "aggregate_type": event.aggregate_type,
            "aggregate_id": event.aggregate_id, "actor": event.actor,
            "correlation_id": event.correlation_id, "payload": event_payload(event)}


# How `job get` words a job event's payload keys; keys not here show as key=value.
_DETAIL_WORDS = {"attempt": "attempt {}", "pid": "pid {}", "exit_code": "exit {}",
                 "worker_id": "on worker {}", "retry_in_seconds": "retry in {}s",
                 "attempt_state": "{}"}
_DETAIL_SKIPPED = frozenset({"name"})


def event_detail(event: events_pb2.Event) -> str:
    """A job event's payload in words: `attempt 1 on worker c68550f5`, a waiting reason."""
    payload = event_payload(event)
    if not isinstance(payload, dict):
        return str(payload) or "-"
    parts = []
    reason = payload.get("reason")
    for key, value in payload.items():
        if key == "reason" or key in _DETAIL_SKIPPED or value in ("", None):
            continue
        if key == "retry_in_seconds" and not value:
            continue
        if key == "attempt_state" and str(value).lower() in event.type:
            continue  # job.succeeded's attempt SUCCEEDED says nothing more
        if key == "worker_id":
            value = str(value)[:8]
        word = _DETAIL_WORDS.get(key)
        parts.append(word.format(value) if word else f"{key}={value}")
    if reason:
        parts.append(str(reason))
    return ", ".join(parts) or "-"


WORKER_COLUMNS = (
    Column("ID", wide=True),
    Column("NAME", shrink=2, min_width=16),
    Column("STATE", coloured=True),
    Column("SLOTS", priority=1),
    Column("LABELS", priority=5, shrink=1, min_width=12),
    Column("CPUS", priority=3, right=True),
    Column("MEM MB", priority=4, right=True),
    Column("HEARTBEAT", priority=2),
)


def slots_text(worker: workers_pb2.Worker) -> str:
    """`1/4`: slots in use of the worker's slots; a worker that is gone holds none."""
    from hodei_api.v1 import workers_pb2

    gone = worker.state in (workers_pb2.WORKER_STATE_TERMINATED, workers_pb2.WORKER_STATE_LOST)
    return f"{0 if gone else worker.running_jobs}/{worker.capacity.slots}"


def worker_row(worker: workers_pb2.Worker, now: float | None = None) -> list[str]:
    """A worker's cells, in the order of WORKER_COLUMNS."""
    capacity = worker.capacity
    heartbeat = age(worker, "last_heartbeat_at", now)
    return [
        worker.id,
        worker.name or worker.id,
        worker_state(worker.state),
        slots_text(worker),
        pairs(worker.labels),
        f"{capacity.cpus:g}",
        str(capacity.memory_mb),
        heartbeat if heartbeat == "-" else f"{heartbeat} ago",
    ]


def print_workers(workers: Sequence[workers_pb2.Worker],
                  output_format: OutputFormat = OutputFormat.table, *,
                  no_headers: bool = False, quiet: bool = False) -> None:
    """The worker list, in `output_format`."""
    now = time.time()
    print_listing(output_format, workers, columns=WORKER_COLUMNS,
                  row=lambda w: worker_row(w, now), data=worker_to_dict,
                  ident=lambda w: w.id, kind="worker", no_headers=no_headers, quiet=quiet)


