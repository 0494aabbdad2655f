"""Bootstrapping hosts over SSH: one host cold (upload, venv, install, start), the same host
again (a no-op re-run), and eight hosts in parallel (cold), against real sshds in network
namespaces (scripts/ssh-lab.sh; run as root). The same-run reference is `ssh HOST true`
with OpenSSH's client (one connection and one remote command) and a bare `python -c pass`.

The wheelhouse is built (and cached) before the timings: it is the operator's one-off.
Needs a PostgreSQL: $HODEI_DATABASE_URL, else a private one is started (pgserver).

Usage: python benchmarks/bench_ssh.py
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
HOSTS = 8


@contextlib.contextmanager
def database() -> Iterator[str]:
    admin = os.environ.get("HODEI_DATABASE_URL")
    handle = None
    data = None
    if not admin:
        import pgserver

        data = Path(tempfile.mkdtemp(prefix="hodei-bench-pg-"))
        handle = pgserver.get_server(data, cleanup_mode="stop")
        admin = handle.get_uri()
    name = f"hodei_bench_ssh_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"'.encode())
    try:
        yield make_conninfo(admin, dbname=name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())
        if handle is not None:
            handle.cleanup()
        if data is not None:
            shutil.rmtree(data, ignore_errors=True)


@contextlib.contextmanager
def lab() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="hodei-bench-lab-"))
    env = {**os.environ, "SSH_LAB_HOSTS": str(HOSTS + 1)}
    try:
        subprocess.run([str(ROOT / "scripts" / "ssh-lab.sh"), "up", str(directory)], env=env,
                       check=True, capture_output=True, text=True)
        yield directory
    finally:
        subprocess.run([str(ROOT / "scripts" / "ssh-lab.sh"), "down", str(directory)],
                       check=False, capture_output=True)
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def server(workdir: Path, bridge: str, db: str) -> Iterator[str]:
    config = workdir / "server.toml"
    config.write_text(f'listen = "{bridge}:0"\ninsecure = true\n[[providers]]\ntype = "local"\n'
                      'name = "local"\nmin_workers = 0\nmax_workers = 0\n')
    ready = workdir / "ready.json"
    proc = subprocess.Popen([str(BIN / "hodei-server"), "--config", str(config),
                             "--ready-file", str(ready)],
                            env={**os.environ, "HODEI_DATABASE_URL": db},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.05)
        yield json.loads(ready.read_text())["address"]
    finally:
        proc.terminate()
        proc.wait(30)


def timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])}...: {done.stderr.strip()}")
    return elapsed


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("bench_ssh: run as root (the lab makes network namespaces and users)")
    with database() as db, lab() as directory, tempfile.TemporaryDirectory() as work:
        rows = [line.split("\t") for line in
                (directory / "hosts.tsv").read_text().splitlines()[1:]]
        hosts = {row[0]: row for row in rows}
        bridge = next(line.split("=", 1)[1] for line in
                      (directory / "lab.env").read_text().splitlines()
                      if line.startswith("BRIDGE_ADDRESS="))
        key = directory / "client" / "id_ed25519"
        env = {**os.environ, "HODEI_DATABASE_URL": db,
               "HODEI_SSH_KNOWN_HOSTS": str(directory / "client" / "known_hosts"),
               "HODEI_WHEEL_CACHE": str(Path(work) / "wheels")}
        host = [str(BIN / "hodeictl"), "host"]
        names = [f"h{i}" for i in range(1, HOSTS + 2)]
        for name in names:
            row = hosts[name]
            subprocess.run([*host, "add", name, "--address", row[1], "--user", row[3],
                            "--key", str(key)], env=env, check=True, capture_output=True)
        with server(Path(work), bridge, db) as address:
            boot = [*host, "bootstrap", "--agent-server", address, "--insecure"]
            first, rest = names[0], names[1:]
            # The operator's one-off: the wheelhouse (cached from then on), on another host.
            subprocess.run([*boot, rest[-1]], env=env, check=True, capture_output=True)
            cold = timed([*boot, first], env)
            rerun = timed([*boot, first], env)
            parallel = timed([*boot, *rest[:HOSTS], "--parallel", str(HOSTS)], env)
            ssh_true = timed(["ssh", "-i", str(key), "-o", "BatchMode=yes", "-o",
                              f"UserKnownHostsFile={directory / 'client' / 'known_hosts'}",
                              f"{hosts[first][3]}@{hosts[first][1]}", "true"], env)
            python = timed([sys.executable, "-c", "pass"], env)
    print(f"bootstrap one host, cold      {cold:7.2f} s  ({cold / ssh_true:6.1f}x ssh true)")
    print(f"bootstrap it again (no-op)    {rerun:7.2f} s  ({rerun / ssh_true:6.1f}x ssh true)")
    print(f"bootstrap {HOSTS} hosts in parallel {parallel:7.2f} s  "
          f"({parallel / cold:4.1f}x one cold host)")
    print(f"reference: ssh HOST true      {ssh_true:7.2f} s;  python -c pass {python:.3f} s")


if __name__ == "__main__":
    main()
