"""Rendering: rich tables for people, JSON for scripts, one-line notes on stderr.

States are named once here: upper-case short names in tables (`RUNNING`), lower-case short
names in JSON (`"state": "running"`).

Strings from the server are untrusted: in tables and notes they pass through
`terminal.sanitize` (no escape sequence reaches the terminal) and are never read as rich
markup (`[bold]` in a job name prints as is); JSON escapes every control, C1 and bidi
character as `\\uXXXX`, so the data is unchanged and the text is inert.
"""

from __future__ import annotations

import contextlib
import datetime
import enum
import json
import re
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import typer
from google.protobuf import json_format, message
from rich import box
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from hodei_api.v1 import jobs_pb2, workers_pb2
from hodeictl import jobflow
from hodeictl.terminal import sanitize

_PIPE_WIDTH = 1000
# What json.dumps(ensure_ascii=False) leaves raw but a terminal may act on.
_JSON_INERT = re.compile("[\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_STATE_STYLES = {
    "SUCCEEDED": "green",
    "RUNNING": "cyan",
    "ASSIGNED": "cyan",
    "READY": "green",
    "BUSY": "cyan",
    "FAILED": "red",
    "TIMED_OUT": "red",
    "LOST": "red",
    "CANCELLED": "yellow",
    "DRAINING": "yellow",
    "BLOCKED": "yellow",
}


class OutputFormat(enum.StrEnum):
    """How listings are printed."""

    table = "table"
    json = "json"


def note(message_text: str) -> None:
    """One line for the person at the terminal, on stderr (stdout stays for data)."""
    typer.echo(sanitize(message_text), err=True)


def progress(message_text: str) -> contextlib.AbstractContextManager[Any]:
    """A spinner on stderr while something slow happens, when stderr is a terminal."""
    if not sys.stderr.isatty():
        return contextlib.nullcontext()
    return Console(stderr=True).status(message_text)


def display_path(path: Path) -> str:
    """`path` with the home directory shown as `~`."""
    try:
        return "~/" + str(path.relative_to(Path.home()))
    except ValueError:
        return str(path)


def job_state(state: int) -> str:
    """`JOB_STATE_TIMED_OUT` → `TIMED_OUT`."""
    return jobs_pb2.JobState.Name(state).removeprefix("JOB_STATE_")


def worker_state(state: int) -> str:
    """`WORKER_STATE_READY` → `READY`."""
    return workers_pb2.WorkerState.Name(state).removeprefix("WORKER_STATE_")


def to_dict(msg: message.Message) -> dict[str, Any]:
    """A message as JSON-ready data, every field shown, names as in the .proto."""
    return json_format.MessageToDict(
        msg,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
        unquote_int64_if_possible=True,
    )


def job_to_dict(job: jobs_pb2.Job) -> dict[str, Any]:
    """The JSON form of a job."""
    data = to_dict(job)
    data["state"] = job_state(job.state).lower()
    for attempt, proto in zip(data.get("attempts", []), job.attempts, strict=True):
        attempt["state"] = job_state(proto.state).lower()
    return data


def worker_to_dict(worker: workers_pb2.Worker) -> dict[str, Any]:
    """The JSON form of a worker."""
    data = to_dict(worker)
    data["state"] = worker_state(worker.state).lower()
    return data


def print_json(data: object) -> None:
    """Pretty JSON on stdout (C0 controls are escaped by json, the rest by us)."""
    text = json.dumps(data, indent=2, ensure_ascii=False)
    typer.echo(_JSON_INERT.sub(lambda m: f"\\u{ord(m.group()):04x}", text))


def _console() -> Console:
    # User data (commands, labels, reasons) must never be read as rich markup or emoji.
    # Into a pipe, tables keep their natural width rather than a guessed 80 columns.
    width = None if sys.stdout.isatty() else _PIPE_WIDTH
    return Console(markup=False, emoji=False, highlight=False, width=width)


def _state_text(name: str) -> Text:
    return Text(name, style=_STATE_STYLES.get(name, ""))


class _SafeTable(Table):
    """A rich table whose string cells are made safe for a terminal."""

    def add_row(self, *renderables: RenderableType | None, **kwargs: Any) -> None:
        super().add_row(
            *(sanitize(r) if isinstance(r, str) else r for r in renderables), **kwargs
        )


def _table(*columns: str) -> Table:
    table = _SafeTable(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False, show_edge=False)
    for column in columns:
        # Ids are never cut; on a narrow terminal the other columns are, with an ellipsis.
        table.add_column(
            column, no_wrap=True, overflow="ellipsis", min_width=36 if column == "ID" else None
        )
    return table


def local_time(parent: message.Message, field: str) -> str:
    """A timestamp field in local time, or "-" when unset."""
    if not parent.HasField(field):
        return "-"
    stamp = getattr(parent, field).ToDatetime(tzinfo=datetime.UTC)
    return str(stamp.astimezone().strftime("%Y-%m-%d %H:%M:%S"))


def _age(parent: message.Message, field: str, now: float) -> str:
    if not parent.HasField(field):
        return "-"
    seconds = max(0, int(now - getattr(parent, field).ToDatetime(tzinfo=datetime.UTC).timestamp()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def _exit_code(has_exit_code: bool, exit_code: int) -> str:
    return str(exit_code) if has_exit_code else "-"


def _pairs(pairs: Any) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(pairs.items())) or "-"


def _what(spec: jobs_pb2.JobSpec) -> str:
    if spec.command:
        return shlex.join(spec.command)
    first_line = spec.script.strip().partition("\n")[0]
    return f"{spec.interpreter or 'sh'} script: {first_line}"


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


def print_jobs(jobs: Sequence[jobs_pb2.Job]) -> None:
    """The job list as a table."""
    now = time.time()
    table = _table("ID", "NAME", "STATE", "EXIT", "ATTEMPT", "CREATED", "COMMAND")
    for job in jobs:
        table.add_row(
            job.id,
            job.spec.name or "-",
            _state_text(job_state(job.state)),
            _exit_code(job.has_exit_code, job.exit_code),
            str(job.attempt),
            _age(job, "created_at", now),
            _what(job.spec),
        )
    _console().print(table)


def print_job(job: jobs_pb2.Job) -> None:
    """One job: its fields, then its attempts."""
    spec = job.spec
    grid = _SafeTable.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    max_attempts = max(spec.max_attempts, 1)
    rows: list[tuple[str, str | Text]] = [
        ("ID", job.id),
        ("Name", spec.name or "-"),
        ("State", _state_text(job_state(job.state))),
        ("Exit code", _exit_code(job.has_exit_code, job.exit_code)),
        ("Reason", job.reason or "-"),
        ("Worker", job.worker_id or "-"),
        ("Submitted by", job.submitted_by or "-"),
        ("Attempt", f"{job.attempt} of {max_attempts}"),
    ]
    if spec.command:
        rows.append(("Command", shlex.join(spec.command)))
    else:
        rows.append((f"Script ({spec.interpreter or 'sh'})", spec.script.rstrip("\n")))
    rows += [
        ("Working dir", spec.working_dir or "-"),
        ("Env", _pairs(spec.env)),
        ("Secrets", _secrets(spec)),
        ("Labels", _pairs(spec.labels)),
        ("Selector", _pairs(spec.selector)),
        ("Resources", _resources(spec.resources)),
        ("Timeout", f"{spec.timeout_seconds:g}s" if spec.timeout_seconds else "none"),
        ("Created", local_time(job, "created_at")),
        ("Started", local_time(job, "started_at")),
        ("Finished", local_time(job, "finished_at")),
        *jobflow.rows(job),  # template, dependencies, indexes (hodeictl.jobflow)
    ]
    for name, value in rows:
        grid.add_row(name, value)
    console = _console()
    console.print(grid)
    if job.attempts:
        table = _table("ATTEMPT", "STATE", "WORKER", "EXIT", "STARTED", "FINISHED", "REASON")
        for attempt in job.attempts:
            table.add_row(
                str(attempt.attempt),
                _state_text(job_state(attempt.state)),
                attempt.worker_id or "-",
                _exit_code(attempt.has_exit_code, attempt.exit_code),
                local_time(attempt, "started_at"),
                local_time(attempt, "finished_at"),
                attempt.reason or "-",
            )
        console.print()
        console.print(table)


def print_workers(workers: Sequence[workers_pb2.Worker]) -> None:
    """The worker list as a table."""
    now = time.time()
    table = _table("ID", "NAME", "STATE", "SLOTS", "LABELS", "CPUS", "MEM MB", "HEARTBEAT")
    for worker in workers:
        capacity = worker.capacity
        table.add_row(
            worker.id,
            worker.name or "-",
            _state_text(worker_state(worker.state)),
            f"{worker.running_jobs}/{capacity.slots}",
            _pairs(worker.labels),
            f"{capacity.cpus:g}",
            str(capacity.memory_mb),
            _age(worker, "last_heartbeat_at", now),
        )
    _console().print(table)


def print_pairs_table(columns: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    """A plain table of strings (contexts, for one)."""
    table = _table(*columns)
    for row in rows:
        table.add_row(*row)
    _console().print(table)
