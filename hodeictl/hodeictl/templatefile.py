"""Template files (TOML): a job defined once, its parameters and its schedule.

    name = "nightly"
    description = "Back up the day's data"
    schedule = "H 3 * * *"           # cron; H spreads the minute by the template's name
    timezone = "Europe/Madrid"
    starting_deadline = "10m"        # a tick later than this is missed (counted, reported)
    concurrency = "forbid"           # allow, forbid or replace

    [history]                        # finished runs whose job is kept (default: all)
    succeeded = 3
    failed = 1

    [[parameters]]
    name = "day"                     # the job's environment variable $day
    type = "string"                  # string, integer, number, boolean
    required = true                  # or: default = "..."
    choices = ["a", "b"]             # optional

    [job]                            # the keys of a job file
    script = "backup --day \"$day\""

Every problem is one line naming the file and the key; the server checks the rest (the
cron expression, the time zone) and its answer is one line too.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from hodei_api.v1 import templates_pb2
from hodeictl import durations, jobfile, tomlfile, values
from hodeictl.errors import InvalidSpec

TOP_LEVEL_KEYS = ("name", "description", "schedule", "timezone", "starting_deadline",
                  "concurrency", "history", "parameters", "job")
PARAMETER_KEYS = ("name", "type", "required", "default", "description", "choices")
HISTORY_KEYS = ("succeeded", "failed")
TYPES = {
    "string": templates_pb2.PARAMETER_TYPE_STRING,
    "integer": templates_pb2.PARAMETER_TYPE_INTEGER,
    "number": templates_pb2.PARAMETER_TYPE_NUMBER,
    "boolean": templates_pb2.PARAMETER_TYPE_BOOLEAN,
}
CONCURRENCY = {
    "allow": templates_pb2.CONCURRENCY_POLICY_ALLOW,
    "forbid": templates_pb2.CONCURRENCY_POLICY_FORBID,
    "replace": templates_pb2.CONCURRENCY_POLICY_REPLACE,
}
MAX_DEADLINE_SECONDS = 366 * 86400.0
MAX_HISTORY = 10_000


def load(path: Path) -> templates_pb2.TemplateSpec:
    """Read a template file; every problem is one InvalidSpec line naming the file."""
    try:
        data = tomlfile.load(path, "template file")
    except FileNotFoundError:
        raise InvalidSpec(f"{path}: template file not found") from None
    except tomlfile.TomlFileError as error:
        raise InvalidSpec(str(error)) from None
    return _Reader(path).read(data)


class _Reader:
    def __init__(self, path: Path) -> None:
        self.path = path

    def error(self, message: str) -> InvalidSpec:
        return InvalidSpec(f"{self.path}: {message}")

    def check_keys(self, table: dict[str, Any], known: tuple[str, ...], prefix: str) -> None:
        for key in table:
            if key not in known:
                hint = difflib.get_close_matches(key, known, n=1)
                suggestion = f"; did you mean '{prefix}{hint[0]}'?" if hint else ""
                raise self.error(f"unknown key {values.shown(prefix + key)}{suggestion}")

    def string(self, data: dict[str, Any], key: str, where: str = "") -> str:
        value = data.get(key, "")
        if not isinstance(value, str):
            raise self.error(f"'{where}{key}' must be a string, got {values.shown(value)}")
        return value

    def read(self, data: dict[str, Any]) -> templates_pb2.TemplateSpec:
        self.check_keys(data, TOP_LEVEL_KEYS, "")
        spec = templates_pb2.TemplateSpec(name=self.string(data, "name"),
                                          description=self.string(data, "description"))
        if not spec.name:
            raise self.error("the template needs a 'name'")
        job = data.get("job")
        if not isinstance(job, dict):
            raise self.error("the template needs a [job] table (the keys of a job file)")
        spec.job.CopyFrom(jobfile.to_spec(jobfile.read_table(self.path, job)))
        self.schedule(data, spec)
        self.history(data.get("history", {}), spec)
        params = data.get("parameters", [])
        if not isinstance(params, list) or not all(isinstance(p, dict) for p in params):
            raise self.error("'parameters' must be an array of tables ([[parameters]])")
        for param in params:
            spec.parameters.append(self.parameter(param))
        return spec

    def schedule(self, data: dict[str, Any], spec: templates_pb2.TemplateSpec) -> None:
        schedule = spec.schedule
        schedule.cron = self.string(data, "schedule")
        schedule.timezone = self.string(data, "timezone")
        if "starting_deadline" in data:
            value = data["starting_deadline"]
            try:
                seconds = durations.check(value, MAX_DEADLINE_SECONDS)
            except ValueError as error:
                raise self.error(f"'starting_deadline': {error}") from None
            schedule.starting_deadline_seconds = seconds
        if "concurrency" in data:
            policy = data["concurrency"]
            if policy not in CONCURRENCY:
                raise self.error(f"'concurrency' must be one of {', '.join(CONCURRENCY)}; got "
                                 f"{values.shown(policy)}")
            schedule.concurrency = CONCURRENCY[policy]

    def history(self, table: object, spec: templates_pb2.TemplateSpec) -> None:
        if not isinstance(table, dict):
            raise self.error("'history' must be a table ([history])")
        self.check_keys(table, HISTORY_KEYS, "history.")
        for key in HISTORY_KEYS:
            if key in table:
                value = table[key]
                if not isinstance(value, int) or isinstance(value, bool) \
                        or not 0 <= value <= MAX_HISTORY:
                    raise self.error(f"'history.{key}' must be a whole number from 0 to "
                                     f"{MAX_HISTORY}, got {values.shown(value)}")
                setattr(spec.history, key, value)

    def parameter(self, table: dict[str, Any]) -> templates_pb2.TemplateParameter:
        self.check_keys(table, PARAMETER_KEYS, "parameters.")
        param = templates_pb2.TemplateParameter(
            name=self.string(table, "name", "parameters."),
            description=self.string(table, "description", "parameters."))
        if not param.name:
            raise self.error("each parameter needs a 'name'")
        kind = table.get("type", "string")
        if kind not in TYPES:
            raise self.error(f"parameter {param.name!r}: 'type' must be one of "
                             f"{', '.join(TYPES)}; got {values.shown(kind)}")
        param.type = TYPES[kind]
        required = table.get("required", False)
        if not isinstance(required, bool):
            raise self.error(f"parameter {param.name!r}: 'required' must be true or false")
        param.required = required
        if "default" in table:
            param.default = self.value(param.name, table["default"])
        choices = table.get("choices", [])
        if not isinstance(choices, list):
            raise self.error(f"parameter {param.name!r}: 'choices' must be a list")
        param.choices.extend(self.value(param.name, c) for c in choices)
        return param

    def value(self, name: str, value: object) -> str:
        """A TOML value as the text the server checks against the parameter's type."""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float | str):
            return str(value)
        raise self.error(f"parameter {name!r}: values must be strings, numbers or booleans, "
                         f"got {values.shown(value)}")
