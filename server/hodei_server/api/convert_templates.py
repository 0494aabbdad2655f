"""Template, schedule and run-history rows to protobuf messages."""

from __future__ import annotations

from typing import Any

from hodei_api.v1 import templates_pb2
from hodei_server.api.convert import _ts
from hodei_server.store.states import JobState

Row = dict[str, Any]

_CONCURRENCY = {
    "allow": templates_pb2.CONCURRENCY_POLICY_ALLOW,
    "forbid": templates_pb2.CONCURRENCY_POLICY_FORBID,
    "replace": templates_pb2.CONCURRENCY_POLICY_REPLACE,
}


def _state(value: str | None) -> int:
    return JobState(value).to_proto() if value else 0


def stats_to_proto(row: Row) -> templates_pb2.TemplateStats:
    finished = row["succeeded"] + row["failed"]
    return templates_pb2.TemplateStats(
        runs=row["runs"], succeeded=row["succeeded"], failed=row["failed"],
        active=row["active"], success_rate=row["succeeded"] / finished if finished else 0.0,
        p50_seconds=float(row["p50"] or 0.0), p95_seconds=float(row["p95"] or 0.0),
        last_state=_state(row["last_state"]),  # type: ignore[arg-type]
        last_job_id=str(row["last_job_id"] or ""),
        last_finished_at=_ts(row["last_finished_at"]),
    )


def schedule_to_proto(row: Row) -> templates_pb2.ScheduleStatus:
    status = templates_pb2.ScheduleStatus(
        template=row["name"], cron=row["cron"], timezone=row["timezone"],
        concurrency=_CONCURRENCY[row["concurrency"]], suspended=row["suspended"],
        template_disabled=row["disabled"], next_run_at=_ts(row["next_run_at"]),
        last_scheduled_at=_ts(row["last_scheduled_at"]),
        last_job_id=str(row["last_job_id"] or ""),
        last_state=_state(row["last_state"]),  # type: ignore[arg-type]
        started=row["started"], missed=row["missed"], skipped=row["skipped"],
        last_missed_at=_ts(row["last_missed_at"]),
        last_missed_reason=row["last_missed_reason"],
    )
    if row["starting_deadline_seconds"] is not None:
        status.starting_deadline_seconds = row["starting_deadline_seconds"]
    return status


def run_to_proto(row: Row) -> templates_pb2.TemplateRunSummary:
    return templates_pb2.TemplateRunSummary(
        job_id=str(row["job_id"]), version=row["version"],
        state=_state(row["state"]),  # type: ignore[arg-type]
        parameters=row["parameters"] or {}, scheduled_at=_ts(row["scheduled_at"]),
        created_at=_ts(row["created_at"]), started_at=_ts(row["started_at"]),
        finished_at=_ts(row["finished_at"]), submitted_by=row["submitted_by"],
    )


def template_to_proto(
    row: Row, stats: Row | None = None, schedule: Row | None = None,
    runs: list[Row] | None = None,
) -> templates_pb2.Template:
    template = templates_pb2.Template(
        name=row["name"], version=row["spec_version"], latest_version=row["version"],
        disabled=row["disabled"], spec=templates_pb2.TemplateSpec.FromString(row["spec"]),
        created_at=_ts(row["created_at"]), updated_at=_ts(row["updated_at"]),
        updated_by=row["updated_by"],
    )
    if stats is not None:
        template.stats.CopyFrom(stats_to_proto(stats))
    if schedule is not None:
        template.schedule.CopyFrom(schedule_to_proto(schedule))
    template.recent_runs.extend(run_to_proto(r) for r in runs or [])
    return template
