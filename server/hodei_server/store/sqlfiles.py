"""Loads the named SQL queries and migrations shipped in hodei_server/store/sql/."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def _read(path: str) -> str:
    return resources.files("hodei_server.store").joinpath("sql", path).read_text(encoding="utf-8")


@cache
def queries() -> dict[str, str]:
    """Every query of queries.sql by name."""
    text = _read("queries.sql")
    parts = _NAME.split(text)
    named: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in named:
            raise ValueError(f"query {name!r} is defined twice in queries.sql")
        named[name] = body.strip()
    return named


def query(name: str) -> str:
    return queries()[name]


def migrations() -> list[tuple[int, str, str]]:
    """(version, file name, SQL) for every migration, in order."""
    folder = resources.files("hodei_server.store").joinpath("sql", "migrations")
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append((version, entry.name, entry.read_text(encoding="utf-8")))
    found.sort()
    return found


def schema() -> str:
    return _read("schema.sql")
