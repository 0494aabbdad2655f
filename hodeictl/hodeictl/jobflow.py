"""Dependencies, fan-out, failure policy and TTL of a job: options, job-file keys, display.

`job run|submit --after ID[:succeeded|:finished|:failed] --completions N --parallelism P`
and, in a job file:

    after = ["0b9c...", "5f1e...:finished"]
    completions = 10
    parallelism = 3
    ttl_after_finished = "1h"
    [[failure_policy]]
    action = "fail_job"          # fail_job, fail_index, ignore, count
    exit_codes = [42]            # not_in = true: every code but these

Kept apart from `hodeictl.jobfile` (which calls `read`, `merge` and `apply`) so that the
two change independently.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from hodeictl import values
from hodeictl.errors import UsageError

if TYPE_CHECKING:
    from hodei_api.v1 import jobs_pb2

FLOW_KEYS = ("after", "completions", "parallelism", "ttl_after_finished", "failure_policy")
RULE_KEYS = ("action", "exit_codes", "not_in")
MAX_COMPLETIONS = 10_000
MAX_TTL_SECONDS = 366 * 86400.0
CONDITION_NAMES = values.CONDITION_NAMES
ACTION_NAMES = ("fail_job", "fail_index", "ignore", "count")


def conditions() -> dict[str, int]:
    """Condition names and their proto values."""
    from hodei_api.v1 import jobs_pb2

    return {name: jobs_pb2.DependencyCondition.Value(f"DEPENDENCY_CONDITION_{name.upper()}")
            for name in CONDITION_NAMES}


def actions() -> dict[str, int]:
    """Failure-policy action names and their proto values."""
    from hodei_api.v1 import jobs_pb2

    return {name: jobs_pb2.FailureAction.Value(f"FAILURE_ACTION_{name.upper()}")
            for name in ACTION_NAMES}


# `ID[:condition]` checked and made canonical (kept here under its old name).
after_value = values.after


@dataclass
class FlowOptions:
    """What a job file or the command line says about these; None means "not said"."""

    after: list[str] | None = None  # "ID:condition"
    completions: int | None = None
    parallelism: int | None = None
    ttl_after_finished: float | None = None
    failure_policy: list[jobs_pb2.FailureRule] | None = None


def from_params(params: dict[str, Any]) -> FlowOptions:
    """The options given on the command line of `job run|submit`."""
    return FlowOptions(after=params.get("after") or None,
                       completions=params.get("completions"),
                       parallelism=params.get("parallelism"))


def merge(base: FlowOptions, override: FlowOptions) -> FlowOptions:
    """The command line's (`override`) wins over the file's; `after` lists add up."""
    merged = dataclasses.replace(base)
    for name in ("completions", "parallelism", "ttl_after_finished", "failure_policy"):
        if getattr(override, name) is not None:
            setattr(merged, name, getattr(override, name))
    if override.after:
        merged.after = [*(base.after or []), *(a for a in override.after
                                               if a not in (base.after or []))]
    return merged


def apply(spec: jobs_pb2.JobSpec, flow: FlowOptions) -> None:
    """Set the spec's fields from `flow`."""
    if flow.parallelism is not None and flow.completions is None:
        raise UsageError("--parallelism needs --completions (an indexed job)")
    for item in flow.after or []:
        job_id, _, condition = item.partition(":")
        spec.after.add(job_id=job_id,
                       condition=conditions()[condition])  # type: ignore[arg-type]
    spec.completions = flow.completions or 0
    spec.parallelism = flow.parallelism or 0
    if flow.ttl_after_finished is not None:
        spec.ttl_after_finished_seconds = flow.ttl_after_finished
    spec.failure_policy.extend(flow.failure_policy or [])


class Reader(Protocol):
    """What `read` needs of the job-file reader."""

    def error(self, message: str) -> Exception: ...

    def type_error(self, key: str, expected: str, value: object) -> Exception: ...

    def check_keys(self, table: Any, known: tuple[str, ...], prefix: str) -> None: ...

    def integer(self, value: object, key: str, minimum: int, maximum: int) -> int: ...

    def duration(self, value: object, key: str, maximum: float) -> float: ...


def read(reader: Reader, data: dict[str, Any]) -> FlowOptions:
    """The keys of FLOW_KEYS in a job file's table."""
    flow = FlowOptions()
    if "after" in data:
        items = data["after"]
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise reader.type_error("after", "a list of job ids", items)
        try:
            flow.after = [after_value(item) for item in items]
        except ValueError as error:
            raise reader.error(f"'after': {error}") from None
    if "completions" in data:
        flow.completions = reader.integer(data["completions"], "completions", 1,
                                          MAX_COMPLETIONS)
    if "parallelism" in data:
        flow.parallelism = reader.integer(data["parallelism"], "parallelism", 1,
                                          MAX_COMPLETIONS)
    if "ttl_after_finished" in data:
        flow.ttl_after_finished = reader.duration(data["ttl_after_finished"],
                                                  "ttl_after_finished", MAX_TTL_SECONDS)
    if "failure_policy" in data:
        flow.failure_policy = _rules(reader, data["failure_policy"])
    return flow


def _rules(reader: Reader, value: object) -> list[jobs_pb2.FailureRule]:
    if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
        raise reader.type_error("failure_policy", "an array of tables ([[failure_policy]])",
                                value)
    rules = []
    for rule in value:
        reader.check_keys(rule, RULE_KEYS, "failure_policy.")
        action = rule.get("action")
        if action not in ACTION_NAMES:
            raise reader.error("'failure_policy.action' must be one of "
                               f"{', '.join(ACTION_NAMES)}; got {values.shown(action)}")
        codes = rule.get("exit_codes")
        if not isinstance(codes, list) or not codes or not all(
                isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in codes):
            raise reader.error("'failure_policy.exit_codes' must be a non-empty list of exit "
                               f"codes from 0 to 255; got {values.shown(codes)}")
        not_in = rule.get("not_in", False)
        if not isinstance(not_in, bool):
            raise reader.type_error("failure_policy.not_in", "a boolean", not_in)
        from hodei_api.v1 import jobs_pb2

        rules.append(jobs_pb2.FailureRule(action=actions()[action],  # type: ignore[arg-type]
                                          exit_codes=codes,
                                          not_in=not_in))
    return rules


# ---- display -----------------------------------------------------------------------------



def rows(job: jobs_pb2.Job) -> list[tuple[str, str]]:
    """`job get`'s lines about where the job comes from, what it waits for, its indexes."""
    condition_names = {v: k for k, v in conditions().items()}
    action_names = {v: k for k, v in actions().items()}
    spec = job.spec
    lines: list[tuple[str, str]] = []
    if job.HasField("run"):
        run = job.run
        lines.append(("Template", f"{run.template} (version {run.version})"))
        params = ", ".join(f"{k}={v}" for k, v in sorted(run.parameters.items()))
        lines.append(("Parameters", params or "-"))
        if run.HasField("scheduled_at"):
            lines.append(("Scheduled for", run.scheduled_at.ToDatetime().isoformat() + "Z"))
    if job.parent_id:
        lines.append(("Index", f"{job.index} of job {job.parent_id}"))
    if spec.after:
        lines.append(("After", ", ".join(
            f"{dep.job_id}:{condition_names.get(dep.condition, 'succeeded')}"
            for dep in spec.after)))
    if spec.completions:
        counts = job.indexes
        at_once = spec.parallelism or spec.completions
        lines.append(("Indexes", f"{spec.completions} (at most {at_once} at once): "
                                 f"{counts.succeeded} succeeded, {counts.failed} failed, "
                                 f"{counts.active} running, {counts.waiting} waiting"))
    if spec.failure_policy:
        lines.append(("Failure policy", "; ".join(
            f"{'not ' if rule.not_in else ''}{','.join(map(str, rule.exit_codes))} -> "
            f"{action_names.get(rule.action, '?')}" for rule in spec.failure_policy)))
    if spec.HasField("ttl_after_finished_seconds"):
        lines.append(("Deleted", f"{spec.ttl_after_finished_seconds:g}s after it finished"))
    return lines
