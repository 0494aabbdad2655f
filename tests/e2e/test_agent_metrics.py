"""An agent started with --metrics-listen reports its running jobs and what they use."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.harness import BIN, ServerProcess
from tests.e2e.test_external_agent import token_create

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return {name: float(value) for name, _, value in
            (line.partition(" ") for line in text.splitlines())
            if name.startswith("hodei_agent_")}


def test_an_agent_reports_the_memory_and_cpu_of_its_jobs(tmp_path: Path,
                                                         database_url: str) -> None:
    server = ServerProcess(tmp_path, database_url, workers=0).start()
    port = _free_port()
    agent = None
    try:
        minted = token_create(database_url, "--label", "site=metrics", "--ttl", "10m")
        assert minted.returncode == 0, minted.stderr
        env = {k: v for k, v in os.environ.items() if not k.startswith("HODEI_")}
        env["HODEI_BOOTSTRAP_TOKEN"] = minted.stdout.decode().strip()
        agent = subprocess.Popen(
            [str(BIN / "hodei-agent"), "--server", server.address, "--name", "m-1",
             "--metrics-listen", f"127.0.0.1:{port}"],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True)
        server.wait_workers(1)
        assert _scrape(port)["hodei_agent_jobs_running"] == 0
        # A job that holds 64 MiB and burns CPU until told to stop.
        program = ("import time\nb = bytearray(64 * 2**20)\nfor i in range(0, len(b), 4096):"
                   "\n    b[i] = 1\nend = time.time() + 60\nwhile time.time() < end: pass\n")
        job = server.hodeictl("job", "submit", "--selector", "site=metrics", "--",
                              "python3", "-c", program)
        assert job.returncode == 0, job.stderr
        figures: dict[str, float] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            figures = _scrape(port)
            if (figures["hodei_agent_jobs_running"] == 1
                    and figures["hodei_agent_jobs_memory_bytes"] >= 64 * 2**20
                    and figures["hodei_agent_jobs_cpu_seconds"] >= 0.5):
                break
            time.sleep(0.2)
        assert figures["hodei_agent_jobs_running"] == 1, figures
        assert figures["hodei_agent_jobs_memory_bytes"] >= 64 * 2**20, figures
        assert figures["hodei_agent_jobs_cpu_seconds"] >= 0.5, figures
        server.hodeictl("job", "cancel", job.stdout.decode().strip())
    finally:
        if agent is not None:
            agent.send_signal(signal.SIGTERM)
            agent.wait(timeout=60)
        server.stop()
