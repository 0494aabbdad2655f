"""`--log-format json`: one JSON object a line, for log shippers (standard library only, so
the agent keeps its two dependencies; the server uses it too).

Each line has `time` (UTC, ISO 8601), `level`, `logger` and `message`, and, when known,
`job`, `attempt`, `worker` and `correlation_id`: from the call's `extra=` or from the
context that `log_context` sets around the work for one job (asyncio tasks inherit it).
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

FIELDS = ("job", "attempt", "worker", "correlation_id")
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_CONTEXT: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar(
    "hodei_log_context", default={})  # noqa: B039 - never mutated, only replaced


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Name the job, attempt, worker or correlation id of every record logged inside."""
    token = _CONTEXT.set({**_CONTEXT.get(), **{k: v for k, v in fields.items() if v}})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def set_log_context(**fields: Any) -> None:
    """As `log_context`, for the rest of the current task (or thread)."""
    _CONTEXT.set({**_CONTEXT.get(), **{k: v for k, v in fields.items() if v}})


class JsonFormatter(logging.Formatter):
    """A record as one JSON object on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = _CONTEXT.get()
        for name in FIELDS:
            value = getattr(record, name, None) or context.get(name)
            if value:
                line[name] = value if isinstance(value, int) else str(value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=True)


def setup(level: str, log_format: str = "text") -> None:
    """Log to stderr at `level`, as text lines or JSON objects."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
