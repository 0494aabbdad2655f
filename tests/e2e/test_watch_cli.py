"""hodeictl on the live streams: `events`, `events --follow` across a server restart,
`job list --watch`, `job wait`, and `--correlation-id` carried to every event."""

from __future__ import annotations

import json
import os
import queue
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import ServerProcess, hodeictl_argv

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class FixedPortServer(ServerProcess):
    """A server that comes back on the same address when restarted."""

    port: int = 0

    def config_text(self) -> str:
        if not self.port:
            self.port = _free_port()
        return super().config_text().replace('listen = "127.0.0.1:0"',
                                             f'listen = "127.0.0.1:{self.port}"')


class Lines:
    """The stdout lines of a long-running hodeictl, read by a thread."""

    def __init__(self, server: ServerProcess, *args: str) -> None:
        env = {**os.environ, "HODEI_SERVER": server.address, "HODEI_TOKEN": server.token}
        self.proc = subprocess.Popen([*hodeictl_argv(), *args], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines: queue.Queue[bytes | None] = queue.Queue()
        # Every line read so far, parsed.
        self.history: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def until(self, done: Callable[[dict[str, Any]], bool],
              timeout: float = 60.0) -> list[dict[str, Any]]:
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            if line is None:
                assert self.proc.stderr is not None
                raise AssertionError(f"hodeictl ended: {self.proc.stderr.read()!r}")
            item = json.loads(line)
            self.history.append(item)
            seen.append(item)
            if done(item):
                return seen

    def stop(self) -> None:
        """Stop it; what it printed meanwhile joins `history`."""
        self.proc.terminate()
        self.proc.wait(timeout=10)
        while (line := self.lines.get(timeout=10)) is not None:
            self.history.append(json.loads(line))


@pytest.fixture
def fixed_server(tmp_path: Path, database_url: str) -> Iterator[FixedPortServer]:
    proc = FixedPortServer(tmp_path, database_url, workers=1).start()
    try:
        yield proc
    finally:
        proc.stop()


def _run(server: ServerProcess, *args: str) -> str:
    out = server.hodeictl(*args)
    assert out.returncode == 0, out.stderr
    return out.stdout.decode().strip()


def test_events_follow_survives_a_server_restart_without_gap_or_repeat(
        fixed_server: FixedPortServer) -> None:
    server = fixed_server
    first = _run(server, "job", "submit", "--", "true")
    follower = Lines(server, "events", "--follow", "-o", "json", "--type", "job")
    try:
        follower.until(lambda e: e["type"] == "job.succeeded" and e["aggregate_id"] == first)
        server.stop()
        server.start()
        second = _run(server, "job", "submit", "--", "true")
        follower.until(lambda e: e["type"] == "job.succeeded" and e["aggregate_id"] == second,
                       timeout=90)
    finally:
        follower.stop()
    # Everything the follower printed, against the trail as stored: in order, every one
    # once, none left out.
    printed = [item["id"] for item in follower.history]
    assert len(printed) == len(set(printed)), "an event came twice"
    listed = json.loads(_run(server, "events", "-o", "json", "--type", "job",
                             "--since", "1h", "--limit", "100000"))
    assert [e["id"] for e in listed] == printed
    assert sum(e["type"] == "job.succeeded" for e in listed) == 2


def test_job_wait_exits_with_the_job_or_says_why_not(server: ServerProcess) -> None:
    failing = _run(server, "job", "submit", "--", "sh", "-c", "sleep 0.5; exit 3")
    assert server.hodeictl("job", "wait", failing).returncode == 3
    refused = server.hodeictl("job", "wait", failing, "--for", "succeeded")
    assert refused.returncode == 1
    assert b"FAILED, not succeeded" in refused.stderr
    ok = _run(server, "job", "submit", "--", "true")
    done = server.hodeictl("job", "wait", ok, "--for", "succeeded", "-o", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["state"] == "succeeded"
    stuck = _run(server, "job", "submit", "--selector", "nowhere=1", "--", "true")
    timed_out = server.hodeictl("job", "wait", stuck, "--timeout", "1s")
    assert timed_out.returncode == 124
    assert server.hodeictl("job", "wait", "not-a-job").returncode == 2


def test_job_list_watch_prints_each_change(server: ServerProcess) -> None:
    watcher = Lines(server, "job", "list", "--watch", "-o", "json")
    try:
        watcher.until(lambda m: m["change"] == "synced")
        job_id = _run(server, "job", "submit", "--", "true")
        watcher.until(lambda m: m["change"] == "changed" and m["job"]["id"] == job_id
                      and m["job"]["state"] == "succeeded")
    finally:
        watcher.stop()


def test_a_correlation_id_rides_on_every_event_of_the_job(server: ServerProcess) -> None:
    out = server.hodeictl("job", "run", "--correlation-id", "deploy-9", "--", "true")
    assert out.returncode == 0, out.stderr
    found = json.loads(_run(server, "events", "--correlation-id", "deploy-9", "-o", "json"))
    assert [e["type"] for e in found] == ["job.created", "job.assigned", "job.running",
                                          "job.succeeded"]
    table = _run(server, "events", "--job", found[0]["aggregate_id"])
    assert table.count("[deploy-9]") == 4


@pytest.mark.parametrize("args", [
    ("events", "--since", "yesterday"),
    ("events", "--worker", "nope"),
    ("events", "--job", "nope"),
    ("events", "--type", "BAD TYPE"),
    ("events", "--limit", "0"),
    ("job", "wait", "0b7c8c52-4d7d-4ad5-9a0c-1f0e2b2b2b2b", "--for", "later"),
])
def test_bad_input_is_one_line_and_exit_2(server: ServerProcess, args: tuple[str, ...]) -> None:
    out = server.hodeictl(*args)
    assert out.returncode == 2, out
    assert out.stderr.count(b"\n") == 1 and b"Traceback" not in out.stderr
