"""A throw-away PostgreSQL with pg_stat_statements loaded, for the benchmarks that count
statements: the embedded stack's own PostgreSQL (pgserver) does not ship the extension, so
these start the system's (`pg_config --bindir`, or /usr/lib/postgresql/*/bin) in a temporary
directory, and point the stack at it with HODEI_DATABASE_URL.

Statements are named by matching their text against the server's named queries. Only the
statements a client sent are counted (track = top), not those run inside them (a foreign
key's check, a trigger's).
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psycopg

from hodei_server.store.sqlfiles import queries


def _bindir() -> Path:
    found = shutil.which("pg_config")
    if found:
        out = subprocess.run([found, "--bindir"], capture_output=True, text=True, check=True)
        path = Path(out.stdout.strip())
        if (path / "initdb").exists():
            return path
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(candidate, "initdb").exists():
            return Path(candidate)
    raise RuntimeError("no PostgreSQL server binaries (initdb) found on this machine")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def private_postgres() -> Iterator[str]:
    """A fresh cluster with pg_stat_statements; yields the URL of its `hodei` database."""
    bindir = _bindir()
    root = Path(tempfile.mkdtemp(prefix="hodei-pgstat-"))
    data = root / "data"
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: run the cluster as postgres
        shutil.chown(root, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(data), "-A", "trust",
                    "-U", "postgres"], check=True, capture_output=True)
    log = root / "postgres.log"
    proc = subprocess.Popen(
        [*as_user, str(bindir / "postgres"), "-D", str(data), "-p", str(port),
         "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={root}",
         "-c", "shared_preload_libraries=pg_stat_statements",
         "-c", "pg_stat_statements.track=top", "-c", "max_connections=200"],
        stdout=subprocess.DEVNULL, stderr=log.open("ab"))
    admin = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(admin, autocommit=True) as conn:
                    conn.execute("CREATE DATABASE hodei")
                break
            except psycopg.OperationalError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(log.read_text()) from None
                time.sleep(0.1)
        url = f"postgresql://postgres@127.0.0.1:{port}/hodei"
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION pg_stat_statements")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(root, ignore_errors=True)


# Parameters, and the constants pg_stat_statements turns into parameters.
_PLACEHOLDER = re.compile(r"%\(\w+\)s|\$\d+|'[^']*'|\b\d+(\.\d+)?\b|\b(null|true|false)\b",
                          re.IGNORECASE)
_COMMENT = re.compile(r"--[^\n]*")


def _shape(sql: str) -> str:
    sql = _COMMENT.sub(" ", sql)
    sql = _PLACEHOLDER.sub("?", sql)
    return " ".join(sql.split()).lower().rstrip(";").rstrip()


def reset(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_statements_reset()")


def statement_counts(url: str) -> tuple[Counter[str], Counter[str]]:
    """(calls, total execution ms) per named query since the last reset; statements that
    are no named query are named by their first words."""
    names = {_shape(body): name for name, body in queries().items()}
    calls: Counter[str] = Counter()
    times: Counter[str] = Counter()
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT query, calls, total_exec_time FROM pg_stat_statements s "
            "JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = current_database()"
        ).fetchall()
    for text, count, total in rows:
        if "pg_stat_statements" in text:
            continue
        shape = _shape(text)
        near = [n for s, n in names.items() if s.startswith(shape) or shape.startswith(s)]
        name = names.get(shape) or (near[0] if len(near) == 1 else " ".join(shape.split()[:6]))
        calls[name] += count
        times[name] += total
    return calls, times
