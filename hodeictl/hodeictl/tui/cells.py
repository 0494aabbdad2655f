"""Table cells and labels made from server data: always sanitised, never read as markup."""

from __future__ import annotations

import time
from collections.abc import Mapping

from google.protobuf import timestamp_pb2
from rich.text import Text

from hodei_api.v1 import auth_pb2, jobs_pb2, workers_pb2
from hodeictl.terminal import sanitize

STATE_STYLES = {
    "SUCCEEDED": "green", "FAILED": "red", "TIMED_OUT": "red", "LOST": "magenta",
    "CANCELLED": "yellow", "RUNNING": "cyan", "ASSIGNED": "blue", "PENDING": "white",
    "BLOCKED": "dim", "READY": "green", "BUSY": "cyan", "DRAINING": "yellow",
    "TERMINATED": "dim", "DISCONNECTED": "magenta", "PROVISIONING": "blue",
}


def safe(value: object, limit: int = 200) -> Text:
    """`value` as one line of plain text (controls made visible), cut at `limit`."""
    text = sanitize(str(value), single_line=True)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return Text(text)


def job_state(state: int) -> str:
    return jobs_pb2.JobState.Name(state).removeprefix("JOB_STATE_") if state else "-"


def worker_state(state: int) -> str:
    return workers_pb2.WorkerState.Name(state).removeprefix("WORKER_STATE_") if state else "-"


def role_name(role: int) -> str:
    try:
        return auth_pb2.Role.Name(role).removeprefix("ROLE_").lower()
    except ValueError:
        return "unknown"


def state_cell(name: str) -> Text:
    return Text(name, style=STATE_STYLES.get(name, ""))


def short_id(value: str) -> str:
    return value[:8]


def age(stamp: timestamp_pb2.Timestamp, now: float | None = None) -> str:
    """How long ago, as `12s`, `5m`, `3h`, `2d`; `-` when unset."""
    if not stamp.seconds and not stamp.nanos:
        return "-"
    seconds = max(0, int((time.time() if now is None else now) - stamp.seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def pairs(mapping: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(mapping.items()))


def command_of(spec: jobs_pb2.JobSpec) -> str:
    if spec.command:
        return " ".join(spec.command)
    return spec.script.strip().splitlines()[0] if spec.script.strip() else ""


def job_name(job: jobs_pb2.Job) -> str:
    return job.spec.name or command_of(job.spec)
