"""kill -9 the embedded stack's server, then `hodeictl up` or `hodeictl down`.

`up` brings the stack back where its agents find it (the same port) and takes them over, or,
when another process took the port, restarts them with the new one: their jobs finish, with
all their output, as the same attempt. `down` after a crash leaves no process of the stack
(agents, keepers, lease watchdogs, jobs, PostgreSQL), found through /proc by a variable of
the environment every one of them inherits.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import hodeictl_argv
from tests.faults.conftest import Recorder
from tests.faults.harness import alive, is_agent, kill_groups, line_faults, pids, wait_for

pytestmark = pytest.mark.e2e

MARKER = "FAULT_STACK_MARKER"  # not HODEI_*, which agents and jobs do not inherit
JOBS = 6
LINES = 300
SCRIPT = f"for i in $(seq 1 {LINES}); do echo line-$i; sleep 0.05; done"
EXPECTED = b"".join(b"line-%d\n" % i for i in range(1, LINES + 1))


class Stack:
    """`hodeictl` against the embedded stack of one home, as a newcomer would run it."""

    def __init__(self, tmp_path: Path) -> None:
        self.home = tmp_path / "home"
        self.marker = f"{MARKER}={secrets.token_hex(8)}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("HODEI_")}
        self.env |= {"HODEI_HOME": str(self.home), "HODEI_CONFIG": str(tmp_path / "config.toml"),
                     MARKER: self.marker.partition("=")[2]}

    def __call__(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([*hodeictl_argv(), *args], env=self.env, capture_output=True,
                              timeout=timeout)

    def json(self, *args: str) -> Any:
        done = self(*args, "-o", "json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def info(self) -> dict[str, Any]:
        return dict(json.loads((self.home / "stack.json").read_text()))

    def processes(self) -> list[int]:
        """Every live process of this stack: all inherit the marker in their environment."""
        found = []
        needle = self.marker.encode()
        for pid in pids():
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if needle in environ and alive(pid):
                found.append(pid)
        return found

    def agents(self) -> list[int]:
        return sorted(pid for pid in self.processes() if is_agent(pid))

    def kill_server(self) -> None:
        os.kill(int(self.info()["pid"]), signal.SIGKILL)
        wait_for(lambda: not alive(int(self.info()["pid"])), 10, "the stack's server to die")


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """A stack in a home of its own; whatever is left of it is stopped afterwards."""
    started = Stack(tmp_path)
    yield started
    started("down", timeout=120)
    kill_groups(started.processes())


def job_states(stack: Stack) -> dict[str, str]:
    return {job["id"]: job["state"] for job in stack.json("job", "list")}


def submit_printing_jobs(stack: Stack) -> list[str]:
    ids = []
    for _ in range(JOBS):
        done = stack("job", "submit", "--", "sh", "-c", SCRIPT)
        assert done.returncode == 0, done.stderr
        ids.append(done.stdout.decode().strip())
    wait_for(lambda: set(job_states(stack).values()) == {"running"}, 60, "every job to run",
             interval=0.2)
    time.sleep(1.0)  # output flows
    return ids


def check_jobs_finished_whole(stack: Stack, ids: list[str], record_figure: Recorder) -> None:
    wait_for(lambda: all(s not in ("pending", "assigned", "running")
                         for s in job_states(stack).values()), 120, "every job to finish",
             interval=0.3)
    with ThreadPoolExecutor(4) as pool:
        logs = list(pool.map(lambda j: stack("job", "logs", j).stdout, ids))
        jobs = list(pool.map(lambda j: stack.json("job", "get", j), ids))
    gaps = duplicates = 0
    for out in logs:
        missing, duplicated = line_faults(EXPECTED.splitlines(), out)
        gaps += missing
        duplicates += duplicated
    record_figure("jobs lost", sum(1 for job in jobs if job["state"] != "succeeded"))
    record_figure("log gaps (lines)", gaps)
    record_figure("duplicate lines", duplicates)
    record_figure("jobs run twice", sum(1 for job in jobs if len(job["attempts"]) > 1))
    assert [job["state"] for job in jobs] == ["succeeded"] * JOBS, jobs
    assert all(len(job["attempts"]) == 1 for job in jobs), jobs
    assert logs == [EXPECTED] * JOBS


def test_up_after_a_killed_server_takes_its_agents_and_jobs_back(
    stack: Stack, record_figure: Recorder,
) -> None:
    assert stack("up", "--detach").returncode == 0
    before = stack.info()
    ids = submit_printing_jobs(stack)
    agents = stack.agents()
    assert agents
    stack.kill_server()
    killed = time.monotonic()
    up = stack("up", "--detach")
    assert up.returncode == 0, up.stderr
    restart = time.monotonic() - killed
    after = stack.info()
    assert after["pid"] != before["pid"]
    assert after["address"] == before["address"]
    check_jobs_finished_whole(stack, ids, record_figure)
    record_figure("kill to the stack back up (s)", round(restart, 2))
    record_figure("agents of the killed server still running", len(
        set(agents) & set(stack.agents())))
    # The same agents: taken over, not replaced.
    assert stack.agents() == agents


def bind(sock: socket.socket, host: str, port: int) -> bool:
    """Bind `sock`, True if it could (a connection may hold the port for a moment)."""
    try:
        sock.bind((host, port))
    except OSError:
        return False
    return True


def test_up_after_a_killed_server_whose_port_was_taken_moves_its_agents(
    stack: Stack, record_figure: Recorder,
) -> None:
    assert stack("up", "--detach").returncode == 0
    before = stack.info()
    ids = submit_printing_jobs(stack)
    agents = stack.agents()
    stack.kill_server()
    host, _, port = before["address"].rpartition(":")
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        wait_for(lambda: bind(squatter, host, int(port)), 10, "the port to be free")
        squatter.listen()
        up = stack("up", "--detach")
        assert up.returncode == 0, up.stderr
        after = stack.info()
        assert after["address"] != before["address"]
        check_jobs_finished_whole(stack, ids, record_figure)
    moved = stack.agents()
    record_figure("agents restarted with the new address", len(set(moved) - set(agents)))
    assert len(moved) == len(agents)
    assert not set(moved) & set(agents)  # each was restarted, on its state dir


def test_down_after_a_killed_server_leaves_no_process(
    stack: Stack, record_figure: Recorder,
) -> None:
    assert stack("up", "--detach").returncode == 0
    tag = f"300.{secrets.randbelow(10**9):09d}"
    for _ in range(3):
        assert stack("job", "submit", "--", "sh", "-c", f"sleep {tag} & sleep {tag}"
                     ).returncode == 0
    wait_for(lambda: set(job_states(stack).values()) == {"running"}, 60, "the jobs to run",
             interval=0.2)
    running = stack.processes()
    postgres = [pid for pid in running if b"postgres" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert postgres and stack.agents()
    stack.kill_server()
    down = stack("down")
    assert down.returncode == 0, down.stderr
    left = stack.processes()
    record_figure("processes before the kill", len(running))
    record_figure("processes left after down", len(left))
    assert left == [], [Path(f"/proc/{p}/cmdline").read_bytes() for p in left]
    assert b"No local Hodei stack was running; stopped what one left running" in down.stderr
    assert b"PostgreSQL" in down.stderr
    # And it starts again from there: PostgreSQL restarts on its data, the jobs stopped by
    # `down` end (LOST: they had one attempt), and new ones run.
    again = stack("job", "run", "--", "echo", "again")
    assert (again.returncode, again.stdout) == (0, b"again\n"), again.stderr
    wait_for(lambda: "running" not in job_states(stack).values(), 60,
             "the stopped jobs to be reported")
    assert stack("down").returncode == 0
    assert stack.processes() == []
    nothing = stack("down")
    assert nothing.stderr == b"No local Hodei stack is running.\n"
