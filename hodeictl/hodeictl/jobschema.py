"""The job file's schema: a pydantic model that validates every file and gives editors their
JSON Schema (`hodeictl job schema`).

Every table forbids keys it does not know. A file the schema refuses is reported in
hodeictl's own words: an unknown key with a "did you mean", anything else as the job-file
reader (`hodeictl.jobfile`) says it, which also checks what a schema cannot (a command and a
script together, ranges that depend on each other). Imported only when a job file is read.
"""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from hodeictl import durations, values

_DURATION_PATTERN = r"^\s*(\d+(\.\d+)?[dhmsDHMS])*\d+(\.\d+)?[dhmsDHMS]?\s*$"
Duration = Annotated[
    Annotated[str, StringConstraints(pattern=_DURATION_PATTERN)]
    | Annotated[float, Field(ge=0)],
    Field(description=f"A duration such as {durations.EXAMPLES} (a number: seconds)."),
]
Pairs = dict[str, str]
_BARE_PATH = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Retry(_Table):
    """When and how often an attempt that ended badly is tried again."""

    max_attempts: Annotated[int, Field(ge=1, le=values.MAX_ATTEMPTS)] | None = None
    backoff_seconds: Duration | None = None
    max_backoff_seconds: Duration | None = None
    on: list[Literal["lost", "failed", "timed_out"]] | None = None


class Resources(_Table):
    """What the job needs of its worker."""

    cpus: Annotated[float, Field(ge=0, le=values.MAX_CPUS)] | None = None
    memory_mb: Annotated[int, Field(ge=0, le=values.MAX_MEMORY_MB)] | None = None


class Secret(_Table):
    """A secret the job gets, and how."""

    name: Annotated[str, Field(min_length=1)]
    as_env: str | None = None
    as_file: str | None = None


class FailureRule(_Table):
    """What an attempt's exit code means for the job."""

    action: Literal["fail_job", "fail_index", "ignore", "count"]
    exit_codes: Annotated[list[Annotated[int, Field(ge=0, le=255)]], Field(min_length=1)]
    not_in: bool = False


class JobFile(_Table):
    """A Hodei job file (TOML): `hodeictl job run -f FILE`."""

    model_config = ConfigDict(extra="forbid", strict=True,
                              json_schema_extra={"title": "Hodei job file"})

    name: str | None = None
    command: Annotated[list[str], Field(min_length=1)] | None = None
    script: str | None = None
    interpreter: str | None = None
    env: Pairs | None = None
    working_dir: str | None = None
    labels: Pairs | None = None
    selector: Pairs | None = None
    timeout: Duration | None = None
    max_attempts: Annotated[int, Field(ge=1, le=values.MAX_ATTEMPTS)] | None = None
    retry: Retry | None = None
    resources: Resources | None = None
    secrets: list[Annotated[str, Field(min_length=1)] | Secret] | None = None
    secret_delivery: Literal["file", "stdin", "both"] | None = None
    after: list[str] | None = None
    completions: Annotated[int, Field(ge=1, le=10_000)] | None = None
    parallelism: Annotated[int, Field(ge=1, le=10_000)] | None = None
    ttl_after_finished: Duration | None = None
    failure_policy: list[FailureRule] | None = None


_TABLES: dict[str, type[BaseModel]] = {"retry": Retry, "resources": Resources,
                                       "secrets": Secret, "failure_policy": FailureRule}


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a job file, as editors (taplo, Even Better TOML) read it."""
    schema = JobFile.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def check(data: dict[str, Any]) -> str | None:
    """None when the schema takes `data`; else an unknown key's line (with a "did you
    mean"), or "" when the reader should word the refusal."""
    try:
        JobFile.model_validate(data)
    except ValidationError as error:
        for problem in error.errors():
            if problem["type"] == "extra_forbidden":
                return _unknown_key([str(part) for part in problem["loc"]])
        return ""
    return None


def _unknown_key(loc: list[str]) -> str:
    path = [part for part in loc if not part.isdigit()]
    key = path[-1]
    # For secrets, a union of a name and a table: pydantic names the branch; drop it.
    path = [part for part in path[:-1] if part in _TABLES or part in JobFile.model_fields]
    model: type[BaseModel] = _TABLES[path[-1]] if path and path[-1] in _TABLES else JobFile
    prefix = "".join(f"{part}." for part in path[-1:])
    hint = difflib.get_close_matches(key, list(model.model_fields), n=1)
    suggestion = f"; did you mean '{prefix}{hint[0]}'?" if hint else ""
    full = prefix + key
    shown = f"'{full}'" if _BARE_PATH.fullmatch(full) else values.shown(full)
    return f"unknown key {shown}{suggestion}"


def describe(data: dict[str, Any]) -> str:
    """The schema's first objection to `data`, as one line."""
    try:
        JobFile.model_validate(data)
    except ValidationError as error:
        problem = error.errors()[0]
        where = ".".join(str(part) for part in problem["loc"] if not isinstance(part, int))
        return f"'{where}': {problem['msg']}"
    return "the file does not fit the job file's schema"
