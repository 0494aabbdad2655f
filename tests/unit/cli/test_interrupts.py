"""Ctrl-C: `job run` stops following (the job keeps running); `up` stops the stack."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hodeictl_fakes import (
    FAKE_STACK_MODULE,
    FakeJobService,
    FakeLogService,
    chunk,
    finished,
    install_fake_stack,
    serve,
    services,
)

from hodeictl import embedded


def hodeictl(*args: str, setup: str = "") -> subprocess.Popen[bytes]:
    """hodeictl in a child process, so that it can get a real SIGINT."""
    code = f"{setup}\nfrom hodeictl.app import main\nmain()"
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def test_ctrl_c_stops_following_and_exits_130() -> None:
    logs = FakeLogService([chunk(1, 1, b"working\n")], finished(0), hold=True)
    jobs = FakeJobService()
    with serve(services(jobs=jobs, logs=logs)) as address:
        process = hodeictl("--server", address, "job", "run", "--", "sleep", "1000")
        assert logs.subscribed.wait(30)
        time.sleep(0.3)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
    job_id = next(iter(jobs.jobs))
    assert process.returncode == 130
    assert stdout == b"working\n"
    assert stderr.decode() == (
        f"Stopped following job {job_id}; it keeps running. "
        f"Cancel it with: hodeictl job cancel {job_id}\n"
    )


def test_up_in_the_foreground_runs_until_ctrl_c(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    install_fake_stack(monkeypatch, tmp_path)
    home = Path(os.environ["HODEI_HOME"])
    process = hodeictl(
        "up", setup=f"import hodeictl.embedded as e; e.STACK_MODULE = {FAKE_STACK_MODULE!r}"
    )
    deadline = time.monotonic() + 30
    while not (home / "stack.json").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert b"fake stack starting" in stdout  # the stack's own output, on our terminal
    assert b"The local Hodei stack is ready at 127.0.0.1:" in stderr
    assert b"Stopping the local Hodei stack" in stderr
    assert not (home / "stack.json").exists()
    assert embedded.read_stack(home) is None
