"""Loads the named SQL queries and migrations shipped in hodei_server/store/sql/.

Named queries live in queries.sql and in the other `.sql` files beside it (one per store
module that has its own), schema.sql aside; a name is unique across them all.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def _read(path: str) -> str:
    return resources.files("hodei_server.store").joinpath("sql", path).read_text(encoding="utf-8")


_NOT_QUERIES = frozenset({"schema.sql"})


def _query_files() -> list[str]:
    folder = resources.files("hodei_server.store").joinpath("sql")
    return sorted(entry.name for entry in folder.iterdir()
                  if entry.name.endswith(".sql") and entry.name not in _NOT_QUERIES)


@cache
def queries() -> dict[str, str]:
    """Every named query of the query files, by name."""
    named: dict[str, str] = {}
    for file_name in _query_files():
        parts = _NAME.split(_read(file_name))
        for name, body in zip(parts[1::2], parts[2::2], strict=True):
            if name in named:
                raise ValueError(f"query {name!r} is defined twice (again in {file_name})")
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
