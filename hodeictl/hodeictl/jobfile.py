"""Job files (TOML) and job options: parse, merge with the command line, build a JobSpec."""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hodei_api.v1 import jobs_pb2
from hodeictl import durations, jobflow, tomlfile, values
from hodeictl.errors import InvalidSpec, UsageError

TOP_LEVEL_KEYS = (
    "name",
    "command",
    "script",
    "interpreter",
    "env",
    "working_dir",
    "labels",
    "selector",
    "timeout",
    "max_attempts",
    "retry",
    "resources",
    "secrets",
    "secret_delivery",
    *jobflow.FLOW_KEYS,  # dependencies, fan-out, failure policy, TTL (hodeictl.jobflow)
)
SECRET_KEYS = ("name", "as_env", "as_file")
SECRET_DELIVERIES = ("file", "stdin", "both")
RESOURCE_KEYS = ("cpus", "memory_mb")
RETRY_KEYS = ("max_attempts", "backoff_seconds", "max_backoff_seconds", "on")
RETRY_ON = ("lost", "failed", "timed_out")
_BARE_PATH = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@dataclass
class JobOptions:
    """What a job file or the command line says about a job; None means "not said"."""

    name: str | None = None
    command: list[str] | None = None
    script: str | None = None
    interpreter: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    working_dir: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    selector: dict[str, str] = field(default_factory=dict)
    cpus: float | None = None
    memory_mb: int | None = None
    timeout_seconds: float | None = None
    max_attempts: int | None = None
    retry_on: list[str] | None = None
    backoff_seconds: float | None = None
    max_backoff_seconds: float | None = None
    # Secret references (names only): {"name": ..., "as_env": ..., "as_file": ...}.
    secrets: list[dict[str, str]] = field(default_factory=list)
    secret_delivery: str | None = None
    flow: jobflow.FlowOptions = field(default_factory=jobflow.FlowOptions)


def parse_pairs(items: Iterable[str], option: str) -> dict[str, str]:
    """`["K=V", ...]` as a dict; the value may contain `=` and may be empty."""
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{option} expects KEY=VALUE, got {values.shown(item)}")
        pairs[key] = value
    return pairs


def merge(base: JobOptions, override: JobOptions) -> JobOptions:
    """`override` (the command line) wins over `base` (the job file), map entries key by key."""
    merged = dataclasses.replace(
        base,
        env={**base.env, **override.env},
        labels={**base.labels, **override.labels},
        selector={**base.selector, **override.selector},
        secrets=_merge_secrets(base.secrets, override.secrets),
        flow=jobflow.merge(base.flow, override.flow),
    )
    if override.command is not None:
        merged.command, merged.script, merged.interpreter = override.command, None, None
    elif override.script is not None:
        merged.command, merged.script = None, override.script
    for name in (
        "name",
        "interpreter",
        "working_dir",
        "cpus",
        "memory_mb",
        "timeout_seconds",
        "max_attempts",
        "retry_on",
        "backoff_seconds",
        "max_backoff_seconds",
        "secret_delivery",
    ):
        if getattr(override, name) is not None:
            setattr(merged, name, getattr(override, name))
    return merged


def _merge_secrets(
    base: list[dict[str, str]], override: list[dict[str, str]]
) -> list[dict[str, str]]:
    """The file's secrets, then the command line's; a name given twice keeps the file's form."""
    names = {ref["name"] for ref in base}
    return [*base, *(ref for ref in override if ref["name"] not in names)]


def to_spec(options: JobOptions) -> jobs_pb2.JobSpec:
    """The JobSpec to submit; raises UsageError when there is nothing (or too much) to run."""
    if not options.command and options.script is None:
        raise UsageError("nothing to run: give a command after --, --script or -f FILE")
    if options.command and options.script is not None:
        raise UsageError("give either a command or a script, not both")
    if options.interpreter is not None and options.script is None:
        raise UsageError("--interpreter applies only to --script")
    try:
        return _build_spec(options)
    except (ValueError, TypeError) as error:
        # Out-of-range numbers, text that is not UTF-8 (say, an argument with a stray byte).
        raise InvalidSpec(f"invalid job: {error}") from None


def _build_spec(options: JobOptions) -> jobs_pb2.JobSpec:
    spec = _plain_spec(options)
    jobflow.apply(spec, options.flow)
    return spec


def _plain_spec(options: JobOptions) -> jobs_pb2.JobSpec:
    return jobs_pb2.JobSpec(
        name=options.name or "",
        command=options.command or [],
        script=options.script or "",
        interpreter=options.interpreter or "",
        env=options.env,
        working_dir=options.working_dir or "",
        labels=options.labels,
        selector=options.selector,
        resources=jobs_pb2.Resources(cpus=options.cpus or 0.0, memory_mb=options.memory_mb or 0),
        timeout_seconds=options.timeout_seconds or 0.0,
        max_attempts=options.max_attempts or 0,
        retry=_retry_policy(options),
        secrets=[jobs_pb2.SecretRef(**ref) for ref in options.secrets],
        secret_delivery=options.secret_delivery or "",
    )


def _retry_policy(options: JobOptions) -> jobs_pb2.RetryPolicy | None:
    if options.retry_on is None and options.backoff_seconds is None \
            and options.max_backoff_seconds is None:
        return None
    return jobs_pb2.RetryPolicy(
        on=options.retry_on or [],
        backoff_seconds=options.backoff_seconds or 0.0,
        max_backoff_seconds=options.max_backoff_seconds or 0.0,
    )


def read_table(path: Path, data: dict[str, Any]) -> JobOptions:
    """The job a table of a file (`path`, for messages) describes, as in a job file."""
    return _JobFileReader(path).read(data)


def load(path: Path) -> JobOptions:
    """Read a TOML job file; every problem is one InvalidSpec line naming the file."""
    try:
        data = tomlfile.load(path, "job file")
    except FileNotFoundError:
        raise InvalidSpec(f"{path}: job file not found") from None
    except tomlfile.TomlFileError as error:
        raise InvalidSpec(str(error)) from None
    from hodeictl import jobschema

    # The schema validates; an unknown key is said here, anything else in the reader's
    # words (it raises first), and a refusal only the schema makes in the schema's.
    verdict = jobschema.check(data)
    if verdict:
        raise InvalidSpec(f"{path}: {verdict}")
    options = _JobFileReader(path).read(data)
    if verdict == "":
        raise InvalidSpec(f"{path}: {jobschema.describe(data)}")
    return options


def _quoted(key: str) -> str:
    """A key (or dotted path) for a message: as written when it is bare, else escaped."""
    return f"'{key}'" if _BARE_PATH.fullmatch(key) else values.shown(key)


def _toml_type(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "table"
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return "date/time"
    return type(value).__name__


class _JobFileReader:
    def __init__(self, path: Path) -> None:
        self.path = path

    def error(self, message: str) -> InvalidSpec:
        return InvalidSpec(f"{self.path}: {message}")

    def type_error(self, key: str, expected: str, value: object) -> InvalidSpec:
        return self.error(f"{_quoted(key)} must be {expected}, got {_toml_type(value)}")

    def check_keys(self, table: Mapping[str, Any], known: tuple[str, ...], prefix: str) -> None:
        for key in table:
            if key in known:
                continue
            hint = difflib.get_close_matches(key, known, n=1)
            suggestion = f"; did you mean '{prefix}{hint[0]}'?" if hint else ""
            raise self.error(f"unknown key {_quoted(prefix + key)}{suggestion}")

    def read(self, data: dict[str, Any]) -> JobOptions:
        self.check_keys(data, TOP_LEVEL_KEYS, "")
        options = JobOptions(
            name=self.string(data, "name"),
            script=self.string(data, "script"),
            interpreter=self.string(data, "interpreter"),
            working_dir=self.string(data, "working_dir"),
            env=self.string_table(data, "env"),
            labels=self.string_table(data, "labels"),
            selector=self.string_table(data, "selector"),
        )
        if "command" in data:
            options.command = self.command(data["command"])
        if options.command is not None and options.script is not None:
            raise self.error("give either 'command' or 'script', not both")
        if "timeout" in data:
            options.timeout_seconds = self.duration(data["timeout"], "timeout",
                                                    values.MAX_TIMEOUT_SECONDS)
        if "max_attempts" in data:
            options.max_attempts = self.integer(data["max_attempts"], "max_attempts", 1,
                                                values.MAX_ATTEMPTS)
        self.retry(data.get("retry", {}), options)
        options.secrets = self.secrets(data.get("secrets", []))
        options.secret_delivery = self.string(data, "secret_delivery")
        if options.secret_delivery is not None \
                and options.secret_delivery not in SECRET_DELIVERIES:
            raise self.error(f"'secret_delivery' must be one of {', '.join(SECRET_DELIVERIES)}; "
                             f"got {values.shown(options.secret_delivery)}")
        options.flow = jobflow.read(self, data)
        resources = data.get("resources", {})
        if not isinstance(resources, dict):
            raise self.type_error("resources", "a table", resources)
        self.check_keys(resources, RESOURCE_KEYS, "resources.")
        if "cpus" in resources:
            options.cpus = self.number(resources["cpus"], "resources.cpus", values.MAX_CPUS)
        if "memory_mb" in resources:
            options.memory_mb = self.integer(
                resources["memory_mb"], "resources.memory_mb", 0, values.MAX_MEMORY_MB)
        return options

    def retry(self, retry: object, options: JobOptions) -> None:
        if not isinstance(retry, dict):
            raise self.type_error("retry", "a table", retry)
        self.check_keys(retry, RETRY_KEYS, "retry.")
        if "max_attempts" in retry:
            if options.max_attempts is not None:
                raise self.error("give max_attempts either at the top or in [retry], not both")
            options.max_attempts = self.integer(retry["max_attempts"], "retry.max_attempts", 1,
                                                values.MAX_ATTEMPTS)
        for key in ("backoff_seconds", "max_backoff_seconds"):
            if key in retry:
                setattr(options, key, self.duration(retry[key], f"retry.{key}",
                                                    values.MAX_BACKOFF_SECONDS))
        if "on" in retry:
            endings = retry["on"]
            if not isinstance(endings, list) or not all(isinstance(e, str) for e in endings):
                raise self.type_error("retry.on", "a list of strings", endings)
            for ending in endings:
                if ending not in RETRY_ON:
                    raise self.error(
                        f"'retry.on' entries must be one of {', '.join(RETRY_ON)}; "
                        f"got {values.shown(ending)}"
                    )
            options.retry_on = list(endings)

    def secrets(self, value: object) -> list[dict[str, str]]:
        """`secrets = ["NAME", ...]` or `[[secrets]]` tables with name, as_env, as_file."""
        if not isinstance(value, list):
            raise self.type_error("secrets", "an array of names or of tables", value)
        refs: list[dict[str, str]] = []
        for item in value:
            if isinstance(item, str):
                item = {"name": item}
            if not isinstance(item, dict):
                raise self.type_error("secrets", "an array of names or of tables", item)
            self.check_keys(item, SECRET_KEYS, "secrets.")
            for key in SECRET_KEYS:
                if key in item and not isinstance(item[key], str):
                    raise self.type_error(f"secrets.{key}", "a string", item[key])
            if not item.get("name"):
                raise self.error("each secret needs a 'name'")
            refs.append(dict(item))
        return refs

    def string(self, data: Mapping[str, Any], key: str) -> str | None:
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            raise self.type_error(key, "a string", value)
        return value

    def string_table(self, data: Mapping[str, Any], key: str) -> dict[str, str]:
        table = data.get(key, {})
        if not isinstance(table, dict):
            raise self.type_error(key, "a table of strings", table)
        for name, value in table.items():
            if not isinstance(value, str):
                raise self.type_error(f"{key}.{name}", "a string", value)
        return dict(table)

    def command(self, value: object) -> list[str]:
        if isinstance(value, str):
            raise self.error(
                '\'command\' must be an array of strings such as ["echo", "hi"] '
                "(use 'script' for a shell line), got string"
            )
        if not isinstance(value, list) or not all(isinstance(arg, str) for arg in value):
            raise self.type_error("command", "an array of strings", value)
        if not value:
            raise self.error("'command' must not be empty")
        return list(value)

    def duration(self, value: object, key: str, maximum: float) -> float:
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise self.error(f"'{key}': {values.shown(value)} is not a duration from 0 to "
                             f"{durations.describe(maximum)}, such as {durations.EXAMPLES}")
        try:
            return durations.check(value, maximum)
        except ValueError as error:
            raise self.error(f"'{key}': {error}") from None

    def number(self, value: object, key: str, maximum: float) -> float:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise self.type_error(key, "a number", value)
        if not math.isfinite(value) or not 0 <= value <= maximum:
            raise self.error(f"'{key}' must be a number from 0 to {maximum:g}, "
                             f"got {values.shown(value)}")
        return float(value)

    def integer(self, value: object, key: str, minimum: int, maximum: int) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.type_error(key, "an integer", value)
        if value < minimum:
            raise self.error(f"'{key}' must be at least {minimum}, got {values.shown(value)}")
        if value > maximum:
            raise self.error(f"'{key}' must be at most {maximum}, got {values.shown(value)}")
        return value
