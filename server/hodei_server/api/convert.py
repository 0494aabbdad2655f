"""Database rows to protobuf messages."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from google.protobuf import timestamp_pb2

from hodei_api.v1 import auth_pb2, events_pb2, jobs_pb2, workers_pb2
from hodei_server.store.states import JobState

Row = dict[str, Any]


def _ts(value: dt.datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def job_to_proto(row: Row, attempts: list[Row] | None = None) -> jobs_pb2.Job:
    job = jobs_pb2.Job(
        id=str(row["id"]),
        spec=jobs_pb2.JobSpec.FromString(row["spec"]),
        state=JobState(row["state"]).to_proto(),
        attempt=row["attempt"],
        worker_id=str(row["worker_id"]) if row["worker_id"] else "",
        reason=row["reason"],
        created_at=_ts(row["created_at"]),
        updated_at=_ts(row["updated_at"]),
        started_at=_ts(row["started_at"]),
        finished_at=_ts(row["finished_at"]),
        submitted_by=row.get("submitted_by") or "",
        correlation_id=row.get("correlation_id") or "",
    )
    if row.get("template_name"):
        job.run.CopyFrom(jobs_pb2.TemplateRun(
            template=row["template_name"], version=row["template_version"] or 0,
            parameters=row["parameters"] or {}, scheduled_at=_ts(row["scheduled_at"])))
    if row.get("parent_id"):
        job.parent_id = str(row["parent_id"])
        job.index = row["job_index"] or 0
    if row["exit_code"] is not None:
        job.has_exit_code = True
        job.exit_code = row["exit_code"]
    for attempt in attempts or []:
        item = job.attempts.add(
            attempt=attempt["attempt"],
            worker_id=str(attempt["worker_id"]),
            assigned_at=_ts(attempt["assigned_at"]),
            started_at=_ts(attempt["started_at"]),
            finished_at=_ts(attempt["finished_at"]),
            state=JobState(attempt["state"]).to_proto(),
            reason=attempt["reason"],
        )
        if attempt["exit_code"] is not None:
            item.has_exit_code = True
            item.exit_code = attempt["exit_code"]
    return job


def worker_to_proto(row: Row) -> workers_pb2.Worker:
    metrics = row["metrics"] or {}
    return workers_pb2.Worker(
        id=str(row["id"]),
        name=row["name"],
        state=workers_pb2.WorkerState.Value(f"WORKER_STATE_{row['state']}"),
        hostname=row["hostname"],
        labels=row["labels"],
        capacity=workers_pb2.Capacity(
            slots=row["slots"], cpus=row["cpus"], memory_mb=row["memory_mb"]
        ),
        running_jobs=row["running_jobs"],
        metrics=workers_pb2.WorkerMetrics(
            cpu_percent=float(metrics.get("cpu_percent", 0.0)),
            memory_total_mb=int(metrics.get("memory_total_mb", 0)),
            memory_available_mb=int(metrics.get("memory_available_mb", 0)),
            disk_free_mb=int(metrics.get("disk_free_mb", 0)),
            load_average=float(metrics.get("load_average", 0.0)),
        ),
        provider=row["provider"],
        registered_at=_ts(row["registered_at"]),
        last_heartbeat_at=_ts(row["last_heartbeat_at"]),
        agent_version=row["agent_version"],
    )


def token_to_proto(row: Row) -> auth_pb2.ApiToken:
    """An API token as listed: never its secret (nor the hash of it)."""
    return auth_pb2.ApiToken(
        id=row["id"],
        name=row["name"],
        role=auth_pb2.Role.Value(f"ROLE_{row['role'].upper()}"),
        created_by=row["created_by"],
        created_at=_ts(row["created_at"]),
        expires_at=_ts(row["expires_at"]),
        last_used_at=_ts(row["last_used_at"]),
        revoked_at=_ts(row["revoked_at"]),
    )


def audit_to_proto(row: Row) -> auth_pb2.AuditEntry:
    detail = dict(row["detail"] or {})
    return auth_pb2.AuditEntry(
        id=row["id"], at=_ts(row["at"]), actor=row["actor"], action=row["action"],
        target=row["target"], allowed=row["allowed"], reason=str(detail.get("reason", "")),
        detail_json=json.dumps(detail, sort_keys=True),
    )


def event_to_proto(row: Row) -> events_pb2.Event:
    return events_pb2.Event(
        id=row["id"], revision=row["revision"], type=row["type"],
        aggregate_type=row["aggregate_type"], aggregate_id=row["aggregate_id"],
        actor=row["actor"], correlation_id=row["correlation_id"],
        created_at=_ts(row["created_at"]),
        payload_json=json.dumps(row["payload"] or {}, sort_keys=True),
    )
