"""The installed `hodeictl tui` in a real terminal (tmux), used as a person would: open it,
submit a job from the form, watch its output arrive, filter the jobs, cancel another job,
drain a worker, quit."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hodei_api.v1 import jobs_pb2, workers_pb2, workers_pb2_grpc
from tests.e2e.harness import BIN, ServerProcess
from tests.tui.harness import submit, wait_state

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
FINAL = {jobs_pb2.JOB_STATE_SUCCEEDED, jobs_pb2.JOB_STATE_FAILED,
         jobs_pb2.JOB_STATE_CANCELLED}


def tmux_binary() -> str:
    """tmux, installed by scripts/tools.sh if missing; under CI=true its absence fails."""
    found = shutil.which("tmux")
    if found is None:
        subprocess.run([str(ROOT / "scripts" / "tools.sh")], capture_output=True, check=False)
        found = shutil.which("tmux")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("tmux is not installed and scripts/tools.sh could not install it")
        pytest.skip("tmux is not available (scripts/tools.sh installs it)")
    return found


class Terminal:
    """One tmux session on a private socket, running a command in a 160x45 terminal."""

    def __init__(self, tmux: str, workdir: Path) -> None:
        self.tmux = tmux
        self.socket = str(workdir / "tmux.sock")
        # A private config: no user settings, and the same size attached or not.
        self.config = workdir / "tmux.conf"
        self.config.write_text("set -g default-size 160x45\n")
        self.session = f"hodei-tui-{uuid.uuid4().hex[:8]}"

    def run(self, *args: str) -> str:
        result = subprocess.run([self.tmux, "-S", self.socket, "-f", str(self.config), *args],
                                capture_output=True, text=True, timeout=30)
        return result.stdout

    def start(self, command: list[str], env: dict[str, str]) -> None:
        exports = [f"{key}={value}" for key, value in env.items()]
        self.run("new-session", "-d", "-s", self.session, "-x", "160", "-y", "45",
                 "env", "-i", *exports, *command)

    def keys(self, *keys: str) -> None:
        self.run("send-keys", "-t", self.session, *keys)
        time.sleep(0.3)

    def type(self, text: str) -> None:
        self.run("send-keys", "-t", self.session, "-l", text)
        time.sleep(0.3)

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", self.session)

    def wait(self, pattern: str, timeout: float = 60.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.screen())
            if found:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} never appeared; the screen:\n"
                                     f"{self.screen()}")
            time.sleep(0.2)

    def alive(self) -> bool:
        return self.session in self.run("list-sessions", "-F", "#{session_name}")

    def stop(self) -> None:
        self.run("kill-server")


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    term = Terminal(tmux_binary(), tmp_path)
    try:
        yield term
    finally:
        term.stop()


def test_an_operator_session(terminal: Terminal, tmp_path: Path, database_url: str) -> None:
    server = ServerProcess(tmp_path, database_url, workers=2).start()
    try:
        victim = submit(server, "sleep", "300", name="victim-job")
        bystander = submit(server, "true", name="bystander-job")
        wait_state(server, bystander.id, FINAL)
        env = {"HODEI_SERVER": server.address, "HODEI_TOKEN": server.token,
               "TERM": "xterm-256color", "HOME": str(tmp_path),
               "PATH": os.environ.get("PATH", "")}
        terminal.start([str(BIN / "hodeictl"), "tui"], env)
        terminal.wait(r"victim-job")
        terminal.wait(r"bystander-job")
        terminal.wait(r"\(admin\)")

        # Submit a job from the form and follow its output.
        terminal.keys("n")
        terminal.wait(r"New job")
        time.sleep(0.5)
        # (tmux reads a word ending in ";" as a command separator: none here.)
        terminal.type("sh -c 'sleep 1 && seq -f tmux-line-%g 5'")
        terminal.keys("C-s")
        terminal.wait(r"sh -c sleep 1")  # the new job, on top of the table
        terminal.keys("Home", "Enter")
        terminal.wait(r"tmux-line-5")
        terminal.wait(r"state SUCCEEDED")
        terminal.keys("Escape")

        # Filter the jobs, then cancel the victim (asked first).
        terminal.keys("/")
        terminal.type("victim")
        terminal.keys("Enter")
        terminal.wait(r"filter: victim")
        terminal.wait(r"victim-job")  # the server's snapshot for the new filter
        screen = terminal.screen()
        assert "victim-job" in screen and "bystander-job" not in screen
        terminal.keys("c")
        terminal.wait(r"Cancel job")
        terminal.keys("y")
        terminal.wait(r"cancel requested")
        assert wait_state(server, victim.id, FINAL).state == jobs_pb2.JOB_STATE_CANCELLED

        # Drain a worker (asked first).
        terminal.keys("3")
        terminal.wait(r"HEARTBEAT")
        terminal.keys("d")
        terminal.wait(r"Drain worker")
        terminal.keys("y")
        # The row turns DRAINING; an idle worker may exit (and leave the table) at once,
        # so the notice of the accepted drain counts too.
        terminal.wait(r"DRAINING|draining local-")
        with server.channel() as channel:
            every = workers_pb2_grpc.WorkerServiceStub(channel).ListWorkers(
                workers_pb2.ListWorkersRequest(all=True), timeout=10).workers
        assert {w.state for w in every} & {workers_pb2.WORKER_STATE_DRAINING,
                                            workers_pb2.WORKER_STATE_TERMINATED}

        terminal.keys("q")
        deadline = time.monotonic() + 15
        while terminal.alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not terminal.alive()
    finally:
        server.stop()
