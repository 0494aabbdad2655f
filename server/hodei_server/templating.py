"""Job templates: checking one, its typed parameters, and the job a run of it is.

A run's parameters reach its job as environment variables named after them (as Jenkins
passes build parameters), every value checked against its declared type first, and
recorded with the run. The server's checks are the rule; each violation is one
`InvalidSpec` line naming the parameter or field.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping

from hodei_api.v1 import jobs_pb2, templates_pb2
from hodei_server import cron
from hodei_server.errors import InvalidSpec
from hodei_server.store.templates import ScheduleSettings, TemplateVersion
from hodei_server.validation import printable, refuse_unknown_fields, shown, validate_spec

MAX_TEMPLATE_NAME = 63
MAX_DESCRIPTION = 1024
MAX_PARAMETERS = 64
MAX_PARAMETER_NAME = 64
MAX_VALUE_BYTES = 4096
MAX_CHOICES = 64
MAX_HISTORY = 10_000
MAX_DEADLINE_SECONDS = 366 * 24 * 3600
MAX_RECENT_RUNS = 100

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_PARAMETER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_INTEGER = re.compile(r"[+-]?[0-9]{1,18}")
_TRUE, _FALSE = frozenset({"true", "yes", "1"}), frozenset({"false", "no", "0"})
_TYPE_NAMES = {
    templates_pb2.PARAMETER_TYPE_UNSPECIFIED: "string",
    templates_pb2.PARAMETER_TYPE_STRING: "string",
    templates_pb2.PARAMETER_TYPE_INTEGER: "integer",
    templates_pb2.PARAMETER_TYPE_NUMBER: "number",
    templates_pb2.PARAMETER_TYPE_BOOLEAN: "boolean",
}
CONCURRENCY = {
    templates_pb2.CONCURRENCY_POLICY_UNSPECIFIED: "allow",
    templates_pb2.CONCURRENCY_POLICY_ALLOW: "allow",
    templates_pb2.CONCURRENCY_POLICY_FORBID: "forbid",
    templates_pb2.CONCURRENCY_POLICY_REPLACE: "replace",
}


def validate_template_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise InvalidSpec(f"template name {shown(name)} must be 1-{MAX_TEMPLATE_NAME} letters, "
                          "digits, '.', '_' or '-', starting with a letter or digit")
    return name


def validate_template(spec: templates_pb2.TemplateSpec) -> None:
    """Raise InvalidSpec with a line saying what to fix, or return."""
    refuse_unknown_fields(spec, "template")
    validate_template_name(spec.name)
    printable(spec.description, "description", MAX_DESCRIPTION)
    if not spec.HasField("job"):
        raise InvalidSpec("the template has no job: give [job] with a command or a script")
    if spec.job.after:
        raise InvalidSpec("a template's job can't wait for other jobs (after): it runs again "
                          "and again, and they run once")
    validate_spec(spec.job)
    _parameters(spec)
    _schedule(spec)
    for name in ("succeeded", "failed"):
        if spec.history.HasField(name):
            value = getattr(spec.history, name)
            if not 0 <= value <= MAX_HISTORY:
                raise InvalidSpec(f"history.{name} must be between 0 and {MAX_HISTORY}")


def _parameters(spec: templates_pb2.TemplateSpec) -> None:
    if len(spec.parameters) > MAX_PARAMETERS:
        raise InvalidSpec(f"a template takes at most {MAX_PARAMETERS} parameters")
    seen: set[str] = set()
    for param in spec.parameters:
        if not _PARAMETER.fullmatch(param.name) or param.name.upper().startswith("HODEI_"):
            raise InvalidSpec(f"parameter {shown(param.name)}: a name is 1-{MAX_PARAMETER_NAME} "
                              "letters, digits or '_', not starting with a digit nor HODEI_ "
                              "(it becomes the job's environment variable)")
        if param.name in seen:
            raise InvalidSpec(f"parameter {param.name!r} is declared twice")
        seen.add(param.name)
        if param.name in spec.job.env:
            raise InvalidSpec(f"parameter {param.name!r} is also in the job's env; drop one")
        if param.type not in _TYPE_NAMES:
            raise InvalidSpec(f"parameter {param.name!r}: type {param.type} is not string, "
                              "integer, number or boolean")
        printable(param.description, f"parameter {param.name!r}: description",
                  MAX_DESCRIPTION)
        if len(param.choices) > MAX_CHOICES:
            raise InvalidSpec(f"parameter {param.name!r}: at most {MAX_CHOICES} choices")
        for choice in param.choices:
            _typed(param, choice, "a choice")
        if param.HasField("default"):
            if param.required:
                raise InvalidSpec(f"parameter {param.name!r} is required and has a default; "
                                  "a default makes it optional: drop one")
            _check_value(param, param.default, "its default")
        elif param.required and spec.schedule.cron:
            raise InvalidSpec(f"parameter {param.name!r} is required and has no default, so "
                              "the schedule's runs could not give it: give it a default")


def _schedule(spec: templates_pb2.TemplateSpec) -> None:
    schedule = spec.schedule
    if not schedule.cron:
        if schedule.timezone or schedule.HasField("starting_deadline_seconds") \
                or schedule.concurrency:
            raise InvalidSpec("timezone, starting_deadline and concurrency need a schedule "
                              "(cron expression)")
        return
    try:
        cron.parse(schedule.cron, schedule.timezone, spec.name)
    except cron.CronError as exc:
        raise InvalidSpec(f"schedule: {exc}") from None
    if schedule.HasField("starting_deadline_seconds"):
        deadline = schedule.starting_deadline_seconds
        if not math.isfinite(deadline) or not 0 <= deadline <= MAX_DEADLINE_SECONDS:
            raise InvalidSpec(f"starting_deadline must be between 0 and {MAX_DEADLINE_SECONDS} "
                              "seconds")
    if schedule.concurrency not in CONCURRENCY:
        raise InvalidSpec(f"concurrency {schedule.concurrency} is not allow, forbid or replace")


def _typed(param: templates_pb2.TemplateParameter, value: str, what: str) -> str:
    """`value` in its canonical text form if it is of the parameter's type."""
    printable(value, f"parameter {param.name!r}", MAX_VALUE_BYTES)
    kind = _TYPE_NAMES.get(param.type, "string")
    if kind == "integer":
        if not _INTEGER.fullmatch(value.strip()):
            raise InvalidSpec(f"parameter {param.name!r}: {what} {shown(value, 40)} is not an "
                              "integer")
        return str(int(value))
    if kind == "number":
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise InvalidSpec(f"parameter {param.name!r}: {what} {shown(value, 40)} is not a "
                              "number")
        return value.strip()
    if kind == "boolean":
        lowered = value.strip().lower()
        if lowered not in _TRUE | _FALSE:
            raise InvalidSpec(f"parameter {param.name!r}: {what} {shown(value, 40)} is not "
                              "true or false")
        return "true" if lowered in _TRUE else "false"
    return value


def _check_value(param: templates_pb2.TemplateParameter, value: str, what: str) -> str:
    canonical = _typed(param, value, what)
    if param.choices and value not in param.choices:
        raise InvalidSpec(f"parameter {param.name!r}: {what} {shown(value, 40)} is not one of "
                          f"{', '.join(repr(c) for c in param.choices[:10])}")
    return canonical


def resolve_parameters(
    spec: templates_pb2.TemplateSpec, given: Mapping[str, str]
) -> dict[str, str]:
    """Every parameter's value for a run: given (checked) or its default; InvalidSpec
    naming a missing, unknown or ill-typed one."""
    declared = {p.name: p for p in spec.parameters}
    for name in given:
        if name not in declared:
            known = ", ".join(sorted(declared)) or "none"
            raise InvalidSpec(f"parameter {shown(name, 40)} is not a parameter of template "
                              f"{spec.name!r} (it takes: {known})")
    values: dict[str, str] = {}
    for name, param in declared.items():
        if name in given:
            values[name] = _check_value(param, given[name], "value")
        elif param.HasField("default"):
            values[name] = _check_value(param, param.default, "its default")
        elif param.required:
            raise InvalidSpec(f"parameter {name!r} is required by template {spec.name!r}: "
                              f"give it with --param {name}=VALUE")
    return values


def run_spec(spec: templates_pb2.TemplateSpec, values: Mapping[str, str]) -> jobs_pb2.JobSpec:
    """The job a run with `values` is: the template's job, the values in its env."""
    job = jobs_pb2.JobSpec()
    job.CopyFrom(spec.job)
    if not job.name:
        job.name = spec.name
    job.env.update(values)
    validate_spec(job)
    return job


def template_version(
    spec: templates_pb2.TemplateSpec, now: dt.datetime
) -> TemplateVersion:
    """What the store keeps of a checked template; its schedule starts after `now`."""
    history = spec.history
    return TemplateVersion(
        name=spec.name,
        spec=spec.SerializeToString(deterministic=True),
        keep_succeeded=history.succeeded if history.HasField("succeeded") else None,
        keep_failed=history.failed if history.HasField("failed") else None,
        schedule=schedule_settings(spec, now),
    )


def schedule_settings(
    spec: templates_pb2.TemplateSpec, now: dt.datetime
) -> ScheduleSettings | None:
    schedule = spec.schedule
    if not schedule.cron:
        return None
    parsed = cron.parse(schedule.cron, schedule.timezone, spec.name)
    return ScheduleSettings(
        cron=parsed.expression,
        timezone=schedule.timezone,
        starting_deadline_seconds=schedule.starting_deadline_seconds
        if schedule.HasField("starting_deadline_seconds") else None,
        concurrency=CONCURRENCY[schedule.concurrency],
        now=now,
        next_run_at=parsed.next_after(now),
    )
