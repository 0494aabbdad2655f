"""Rendering: tables for people, JSON and YAML for scripts, one-line notes on stderr.

States are named once here: upper-case short names in tables (`RUNNING`), lower-case short
names in JSON (`"state": "running"`).

Strings from the server are untrusted: in tables and notes they pass through
`terminal.sanitize` (no escape sequence reaches the terminal); JSON and YAML escape every
control, C1 and bidi character as `\\uXXXX`, so the data is unchanged and the text is inert.

Nothing heavy is imported here at module level: protobuf (for `to_dict`), the generated
messages (for state names) and rich (for a spinner) are imported by the functions that use
them, once a command has data to show — `hodeictl --help` never pays for them.
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
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hodeictl import table
from hodeictl.table import Column
from hodeictl.terminal import sanitize

if TYPE_CHECKING:
    from google.protobuf import message

    from hodei_api.v1 import jobs_pb2, workers_pb2

# What json.dumps(ensure_ascii=False) leaves raw but a terminal may act on.
_JSON_INERT = re.compile("[\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


class OutputFormat(enum.StrEnum):
    """How listings are printed."""

    table = "table"
    wide = "wide"
    json = "json"
    yaml = "yaml"
    name = "name"


def echo(text: str = "", *, err: bool = False) -> None:
    """`text` and a newline on stdout (stderr with `err`), flushed.

    What typer.echo does with text that is already inert, without importing typer: the
    fast command lines of hodeictl.launch print through here too.
    """
    stream = sys.stderr if err else sys.stdout
    stream.write(f"{text}\n")
    stream.flush()


def note(message_text: str) -> None:
    """One line for the person at the terminal, on stderr (stdout stays for data)."""
    echo(sanitize(message_text), err=True)


def progress(message_text: str) -> contextlib.AbstractContextManager[Any]:
    """A spinner on stderr while something slow happens, when stderr is a terminal."""
    if not sys.stderr.isatty():
        return contextlib.nullcontext()
    from rich.console import Console

    return Console(stderr=True).status(message_text)


def display_path(path: Path) -> str:
    """`path` with the home directory shown as `~`."""
    try:
        return "~/" + str(path.relative_to(Path.home()))
    except ValueError:
        return str(path)


def job_state(state: int) -> str:
    """`JOB_STATE_TIMED_OUT` → `TIMED_OUT`."""
    from hodei_api.v1 import jobs_pb2

    return jobs_pb2.JobState.Name(state).removeprefix("JOB_STATE_")  # type: ignore[arg-type]


def worker_state(state: int) -> str:
    """`WORKER_STATE_READY` → `READY`."""
    from hodei_api.v1 import workers_pb2

    return workers_pb2.WorkerState.Name(state).removeprefix(  # type: ignore[arg-type]
        "WORKER_STATE_")


def to_dict(msg: message.Message) -> dict[str, Any]:
    """A message as JSON-ready data, every field shown, names as in the .proto."""
    from google.protobuf import json_format

    return json_format.MessageToDict(
        msg,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
        unquote_int64_if_possible=True,
    )


def job_to_dict(job: jobs_pb2.Job) -> dict[str, Any]:
    """The JSON form of a job: `exit_code` is null until the job has one."""
    data = to_dict(job)
    data["state"] = job_state(job.state).lower()
    if not job.has_exit_code:
        data["exit_code"] = None
    for attempt, proto in zip(data.get("attempts", []), job.attempts, strict=True):
        attempt["state"] = job_state(proto.state).lower()
        if not proto.has_exit_code:
            attempt["exit_code"] = None
    return data


def worker_to_dict(worker: workers_pb2.Worker) -> dict[str, Any]:
    """The JSON form of a worker."""
    data = to_dict(worker)
    data["state"] = worker_state(worker.state).lower()
    if data["state"] in ("terminated", "lost"):
        data["running_jobs"] = 0  # a worker that is gone holds no slot (its last count stays)
    return data


def _inert(text: str) -> str:
    return _JSON_INERT.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def print_json(data: object) -> None:
    """Pretty JSON on stdout (C0 controls are escaped by json, the rest by us)."""
    echo(_inert(json.dumps(data, indent=2, ensure_ascii=False)))


def to_yaml(data: object, indent: int = 0) -> str:
    """YAML for JSON-like data. Every string is a double-quoted scalar (JSON's escapes are
    YAML's), so no value is ever read as another type or as YAML syntax."""
    pad = "  " * indent
    if isinstance(data, dict):
        if not data:
            return "{}"
        lines = []
        for key, value in data.items():
            name = json.dumps(str(key), ensure_ascii=False)
            if isinstance(value, dict | list) and value:
                lines.append(f"{pad}{name}:\n{to_yaml(value, indent + 1)}")
            else:
                lines.append(f"{pad}{name}: {to_yaml(value, indent + 1)}")
        return "\n".join(lines)
    if isinstance(data, list):
        if not data:
            return "[]"
        lines = []
        for item in data:
            text = to_yaml(item, indent + 1)
            if isinstance(item, dict | list) and item:
                lines.append(f"{pad}- {text.lstrip()}")
            else:
                lines.append(f"{pad}- {text}")
        return "\n".join(lines)
    return json.dumps(data, ensure_ascii=False)


def print_yaml(data: object) -> None:
    """YAML on stdout, as inert as `print_json`'s JSON."""
    echo(_inert(to_yaml(data)))


def print_data(output_format: OutputFormat, data: object) -> bool:
    """Print `data` as JSON or YAML if that is the format; whether it did."""
    if output_format is OutputFormat.json:
        print_json(data)
        return True
    if output_format is OutputFormat.yaml:
        print_yaml(data)
        return True
    return False


def print_listing(
    output_format: OutputFormat,
    items: Sequence[Any],
    *,
    columns: Sequence[Column],
    row: Callable[[Any], Sequence[str]],
    data: Callable[[Any], object],
    ident: Callable[[Any], str],
    kind: str,
    no_headers: bool = False,
    quiet: bool = False,
) -> None:
    """One listing in the format asked for: a table (`wide`: every column), JSON, YAML,
    `kind/ident` per line (`name`), or with `quiet` the idents alone."""
    if quiet:
        for item in items:
            echo(sanitize(ident(item), single_line=True))
        return
    if output_format in (OutputFormat.json, OutputFormat.yaml):
        print_data(output_format, [data(item) for item in items])
        return
    if output_format is OutputFormat.name:
        for item in items:
            echo(sanitize(f"{kind}/{ident(item)}", single_line=True))
        return
    table.print_table(columns, [row(item) for item in items], headers=not no_headers,
                      wide=output_format is OutputFormat.wide)


def local_time(parent: message.Message, field: str) -> str:
    """A timestamp field in local time, or "-" when unset."""
    if not parent.HasField(field):
        return "-"
    stamp = getattr(parent, field).ToDatetime(tzinfo=datetime.UTC)
    return str(stamp.astimezone().strftime("%Y-%m-%d %H:%M:%S"))


def age(parent: message.Message, field: str, now: float | None = None) -> str:
    """How long ago a timestamp field was: `5m`, `2h`, `3d`; "-" when unset."""
    if not parent.HasField(field):
        return "-"
    now = time.time() if now is None else now
    seconds = max(0, int(now - getattr(parent, field).ToDatetime(tzinfo=datetime.UTC).timestamp()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def exit_code_text(has_exit_code: bool, exit_code: int) -> str:
    return str(exit_code) if has_exit_code else "-"


def pairs(items: Any) -> str:
    """`{"a": "1"}` → `a=1`; "-" when empty."""
    return ",".join(f"{key}={value}" for key, value in sorted(items.items())) or "-"


def what(spec: jobs_pb2.JobSpec) -> str:
    """The command of a job, or the first line of its script."""
    if spec.command:
        return shlex.join(spec.command)
    first_line = spec.script.strip().partition("\n")[0]
    return f"{spec.interpreter or 'sh'} script: {first_line}"


def print_fields(rows: Iterable[tuple[str, str]]) -> None:
    """`Name:   value` lines, aligned; a value of several lines is indented under itself."""
    rows = list(rows)
    size = max((len(name) for name, _ in rows), default=0) + 2
    for name, value in rows:
        lines = sanitize(value).split("\n")
        label = f"{name}:".ljust(size)
        echo(f"{label}{sanitize(lines[0], single_line=True)}".rstrip())
        for more in lines[1:]:
            echo(f"{' ' * size}{sanitize(more, single_line=True)}".rstrip())


def print_pairs_table(columns: Sequence[str | Column], rows: Sequence[Sequence[str]],
                      output_format: OutputFormat = OutputFormat.table, *,
                      kind: str = "", no_headers: bool = False) -> None:
    """A plain table of strings (contexts, tokens...). A column given by its header alone:
    the first never drops, the last ones drop first, and the widest of the rest is cut
    before anything drops. `-o name` prints KIND/first cell a line."""
    if output_format is OutputFormat.name:
        for row in rows:
            echo(sanitize(f"{kind}/{row[0]}" if kind else row[0], single_line=True))
        return
    table.print_table(
        [name if isinstance(name, Column) else
         Column(name, priority=index, shrink=2 if index == 0 else 1, min_width=12)
         for index, name in enumerate(columns)], rows, headers=not no_headers,
        wide=output_format is OutputFormat.wide)
