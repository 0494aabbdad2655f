"""Debian's real Prometheus scrapes a real server: the figures it reports through its HTTP
API match the jobs this test ran."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.harness import ServerProcess

pytestmark = pytest.mark.e2e

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "prometheus.sh"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _query(port: int, expression: str) -> float | None:
    """The value of a PromQL expression that yields one sample, or None for none."""
    url = (f"http://127.0.0.1:{port}/api/v1/query?"
           + urllib.parse.urlencode({"query": expression}))
    with urllib.request.urlopen(url, timeout=5) as reply:
        body = json.load(reply)
    result = body["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def _unavailable(why: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"prometheus can't be started: {why}")
    pytest.skip(f"prometheus can't be started: {why}")


def test_prometheus_reports_the_jobs_that_ran(tmp_path: Path, database_url: str) -> None:
    metrics_port, prometheus_port = _free_port(), _free_port()
    server = ServerProcess(tmp_path, database_url, workers=1,
                           extra_config=f'metrics_listen = "127.0.0.1:{metrics_port}"').start()
    prometheus: subprocess.Popen[bytes] | None = None
    try:
        for _ in range(5):
            assert server.hodeictl("job", "run", "--", "echo", "hello").returncode == 0
        for _ in range(2):
            assert server.hodeictl("job", "run", "--", "sh", "-c", "exit 4").returncode == 4
        log = (tmp_path / "prometheus.log").open("wb")
        try:
            prometheus = subprocess.Popen(
                [str(SCRIPT), "--port", str(prometheus_port), "--dir",
                 str(tmp_path / "prometheus"), "--interval", "1s",
                 f"127.0.0.1:{metrics_port}"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        except OSError as exc:
            _unavailable(str(exc))
        expected = {
            'sum(hodei_jobs{state="succeeded"})': 5.0,
            'sum(hodei_jobs{state="failed"})': 2.0,
            "sum(hodei_job_run_seconds_count)": 7.0,
            'sum(hodei_job_run_seconds_count{outcome="failed"})': 2.0,
            "sum(hodei_job_submit_to_start_seconds_count)": 7.0,
            "sum(hodei_job_queue_wait_seconds_count)": 7.0,
            "sum(hodei_reconciler_leader)": 1.0,
            'sum(hodei_workers{state=~"ready|busy"})': 1.0,
            "sum(hodei_slots)": float(server.slots),
        }
        seen: dict[str, float | None] = {}
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if prometheus.poll() is not None:
                _unavailable((tmp_path / "prometheus.log").read_text()[-2000:])
            try:
                seen = {expr: _query(prometheus_port, expr) for expr in expected}
            except OSError:
                seen = {}
            if seen == expected:
                break
            time.sleep(0.5)
        assert seen == expected
        # Output stored: at least the five lines of "hello\n".
        chunks = _query(prometheus_port, "sum(hodei_log_chunks_total)")
        stored = _query(prometheus_port, "sum(hodei_log_bytes_total)")
        assert chunks is not None and chunks >= 5
        assert stored is not None and stored >= 5 * len("hello\n")
        rounds = _query(prometheus_port, "sum(hodei_dispatch_rounds_total)")
        assert rounds is not None and rounds >= 7
        # Each job was submitted to an idle agent: started without a claim round (the
        # first may have come before the agent was there).
        placed = _query(prometheus_port, "sum(hodei_jobs_placed_at_submission_total)")
        assert placed is not None and placed >= 6
        # No job id is a label of any series.
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics",
                                    timeout=5) as reply:
            exposition = reply.read().decode()
        listed = json.loads(server.hodeictl("job", "list", "-o", "json").stdout)
        assert listed and not any(job["id"] in exposition for job in listed)
    finally:
        if prometheus is not None:
            prometheus.terminate()
            prometheus.wait(timeout=30)
        server.stop()
