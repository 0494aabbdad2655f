"""Fault-injection helpers: servers on a fixed port, process discovery, signals, gRPC."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import grpc
import psycopg

from hodei_api.v1 import jobs_pb2, jobs_pb2_grpc
from tests.e2e.harness import ServerProcess

FINAL = {"SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class FaultServer(ServerProcess):
    """A `hodei-server` whose whole configuration (listen address included) the test sets."""

    listen: str = "127.0.0.1:0"
    heartbeat_interval: float = 1.0
    heartbeat_ttl: float = 20.0
    reconcile_interval: float = 1.0  # the product's default
    name: str = "server"
    # The local provider restarts an agent killed by a signal (off: a killed agent stays gone).
    restart_agents: bool = True

    def __post_init__(self) -> None:
        self.workdir = self.workdir / self.name
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "server.log"

    def config_text(self) -> str:
        return (
            f'listen = "{self.listen}"\n'
            f"heartbeat_interval = {self.heartbeat_interval}\n"
            f"heartbeat_ttl = {self.heartbeat_ttl}\n"
            "resync_interval = 0.5\n"
            f"reconcile_interval = {self.reconcile_interval}\n"
            f"{self.extra_config}\n"
            "[[providers]]\n"
            'type = "local"\n'
            'name = "local"\n'
            f"min_workers = {self.workers}\n"
            f"max_workers = {self.workers}\n"
            f"slots = {self.slots}\n"
            f"restart = {'true' if self.restart_agents else 'false'}\n"
            f"{self.provider_config}\n"
        )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def agent_pids(self) -> list[int]:
        """The pids of the agents this server's local provider started (its children)."""
        return agents_of(self.pid)


# --- /proc ---------------------------------------------------------------------------------


def _cmdline(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return []


def _stat(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command's name (state, ppid, pgrp, session,
    ...); [] once the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    return stat.rsplit(")", 1)[1].split()


def _ppid(pid: int) -> int:
    fields = _stat(pid)
    return int(fields[1]) if fields else -1


def session_of(pid: int) -> int:
    """The process's session id; -1 once it is gone."""
    fields = _stat(pid)
    return int(fields[3]) if fields else -1


def _state(pid: int) -> str:
    """The process's state letter (R, S, Z, ...); "" once it is gone."""
    fields = _stat(pid)
    return fields[0] if fields else ""


def alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    return _state(pid) not in ("", "Z")


def zombies_of(parents: Iterable[int]) -> list[int]:
    """Zombies whose parent is one of `parents` (nobody reaped them)."""
    wanted = set(parents)
    return [p for p in pids() if _ppid(p) in wanted and _state(p) == "Z"]


def keepers_of(agent_pid: int) -> list[int]:
    """The job keepers an agent started (its children running `hodei_agent.keeper`)."""
    return [p for p in pids() if _ppid(p) == agent_pid and b"hodei_agent.keeper" in _cmdline(p)]


def pids() -> Iterable[int]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            yield int(entry.name)


def is_agent(pid: int) -> bool:
    argv = _cmdline(pid)
    return b"hodei_agent" in argv or any(a.endswith(b"hodei-agent") for a in argv)


def agent_named(name: str) -> int:
    """The pid of the agent process started with `--name name`."""
    for pid in pids():
        if is_agent(pid) and name.encode() in _cmdline(pid):
            return pid
    raise AssertionError(f"no agent process named {name}")


def agents_of(server_pid: int) -> list[int]:
    return sorted(p for p in pids() if _ppid(p) == server_pid and is_agent(p))


def agents_dialing(address: str) -> list[int]:
    """Every live agent process told to dial `address` (orphans included)."""
    found = []
    for pid in pids():
        argv = _cmdline(pid)
        if is_agent(pid) and address.encode() in argv and alive(pid):
            found.append(pid)
    return sorted(found)


def processes_with_arg(marker: str) -> list[int]:
    """Live processes with `marker` as one of their arguments."""
    needle = marker.encode()
    return [p for p in pids() if needle in _cmdline(p)[1:] and alive(p)]


def processes_by_arg(markers: Iterable[str]) -> dict[str, list[int]]:
    """For each of `markers`, the live processes having it as one of their arguments (one
    pass over /proc for all of them)."""
    wanted = {marker.encode(): marker for marker in markers}
    found: dict[str, list[int]] = {marker: [] for marker in wanted.values()}
    for pid in pids():
        for arg in _cmdline(pid)[1:]:
            if arg in wanted and alive(pid):
                found[wanted[arg]].append(pid)
                break
    return found


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for p in pids():
        children.setdefault(_ppid(p), []).append(p)
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def kill_groups(agent_pids: Iterable[int]) -> None:
    """SIGKILL the process groups of agents (their jobs run in groups of their own)."""
    for pid in agent_pids:
        victims = [pid, *descendants(pid)]
        for victim in victims:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(os.getpgid(victim), signal.SIGKILL)
        for victim in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)


def wait_for(predicate: Callable[[], object], timeout: float, what: str,
             interval: float = 0.02) -> float:
    """Poll `predicate` until true; return the time it took."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
    return time.monotonic() - start


# --- the API -------------------------------------------------------------------------------


def submit(channel: grpc.Channel, *, command: list[str] | None = None, script: str = "",
           max_attempts: int = 1, timeout: float = 0.0) -> str:
    spec = jobs_pb2.JobSpec(command=command or [], script=script, max_attempts=max_attempts,
                            timeout_seconds=timeout)
    stub = jobs_pb2_grpc.JobServiceStub(channel)
    return str(stub.SubmitJob(jobs_pb2.SubmitJobRequest(spec=spec), timeout=10).job.id)


def get_job(channel: grpc.Channel, job_id: str) -> jobs_pb2.Job:
    stub = jobs_pb2_grpc.JobServiceStub(channel)
    return stub.GetJob(jobs_pb2.GetJobRequest(id=job_id), timeout=10)


def state_of(channel: grpc.Channel, job_id: str) -> str:
    return jobs_pb2.JobState.Name(get_job(channel, job_id).state).removeprefix("JOB_STATE_")


def cancel(channel: grpc.Channel, job_id: str) -> None:
    stub = jobs_pb2_grpc.JobServiceStub(channel)
    stub.CancelJob(jobs_pb2.CancelJobRequest(id=job_id, reason="fault test"), timeout=10)


# --- the database --------------------------------------------------------------------------


def db_states(url: str) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        return {str(r[0]): r[1] for r in conn.execute("SELECT id, state FROM jobs")}


def stored_output(url: str, job_id: str) -> tuple[bytes, bytes]:
    """(stdout, stderr) of a job as stored, every attempt in order."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT stream, data FROM job_logs WHERE job_id = %s ORDER BY attempt, seq",
            (job_id,),
        ).fetchall()
    out = b"".join(bytes(d) for s, d in rows if s == 1)
    err = b"".join(bytes(d) for s, d in rows if s == 2)
    return out, err


def line_faults(expected: list[bytes], got: bytes) -> tuple[int, int]:
    """(lines missing, lines duplicated) of `got` against the `expected` lines."""
    lines = got.splitlines()
    seen: dict[bytes, int] = {}
    for line in lines:
        seen[line] = seen.get(line, 0) + 1
    missing = sum(1 for line in expected if line not in seen)
    duplicated = sum(count - 1 for count in seen.values() if count > 1)
    return missing, duplicated


def hodeictl_logs(server: ServerProcess, job_id: str) -> subprocess.CompletedProcess[bytes]:
    return server.hodeictl("job", "logs", job_id, timeout=60)


def start_agent(url: str, address: str, workdir: Path, name: str, slots: int = 4,
                drain_grace: float = 30.0, state_dir: Path | None = None,
                args: Iterable[str] = ()) -> subprocess.Popen[bytes]:
    """An agent this test owns (so it sees the exit code), with a fresh bootstrap token;
    `args`: more of its options."""
    import hashlib
    import secrets
    import sys

    token = secrets.token_urlsafe(32)
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO bootstrap_tokens (token_hash, provider, labels, expires_at)"
            " VALUES (%s, 'test', '{}'::jsonb, now() + interval '10 minutes')",
            (hashlib.sha256(token.encode()).digest(),),
        )
    env = {k: v for k, v in os.environ.items() if not k.startswith("HODEI_")}
    env["HODEI_BOOTSTRAP_TOKEN"] = token
    log = (workdir / f"{name}.log").open("ab")
    state = ["--state-dir", str(state_dir)] if state_dir is not None else []
    return subprocess.Popen(
        [sys.executable, "-m", "hodei_agent", "--server", address, "--name", name,
         "--slots", str(slots), "--drain-grace", str(drain_grace), *state, *args],
        env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
