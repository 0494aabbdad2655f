"""hodeictl used as a person uses it: typed into bash in a real terminal (tmux), read back
from the screen, against a real server.

tmux comes from scripts/tools.sh (run by scripts/test.sh). Without it these tests skip,
except in CI (`CI=true`), where that is a failure.
"""

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

from hodeictl.table import cell_width
from tests.e2e.harness import BIN, ServerProcess

PROMPT = "hodei$ "
# capture-pane drops the blank at the end of a line.
PROMPT_LINE = r"^hodei\$ ?$"


def _tmux_or_fail() -> str:
    tmux = shutil.which("tmux")
    if tmux is None:
        message = "tmux is not installed (scripts/tools.sh installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return tmux


class Terminal:
    """A bash in a tmux window of its own server (its own socket): type, then read."""

    def __init__(self, tmux: str, env: dict[str, str], width: int, height: int) -> None:
        self.tmux = tmux
        self.socket = f"hodei-test-{uuid.uuid4().hex[:8]}"
        environment = " ".join(f"{k}={v}" for k, v in env.items())
        self._run("new-session", "-d", "-s", "t", "-x", str(width), "-y", str(height),
                  f"env -i {environment} bash --norc --noprofile")
        self.type(f"PS1='{PROMPT}'")
        self.wait_for(PROMPT_LINE)

    def _run(self, *args: str) -> str:
        done = subprocess.run([self.tmux, "-L", self.socket, *args], capture_output=True,
                              text=True, timeout=30, check=True)
        return done.stdout

    def type(self, text: str, enter: bool = True) -> None:
        self._run("send-keys", "-t", "t", "-l", text)
        if enter:
            self._run("send-keys", "-t", "t", "Enter")

    def keys(self, *names: str) -> None:
        self._run("send-keys", "-t", "t", *names)

    def screen(self) -> str:
        return self._run("capture-pane", "-p", "-t", "t", "-S", "-200")

    def clear(self) -> None:
        self.type("clear")
        self._run("clear-history", "-t", "t")
        time.sleep(0.2)

    def wait_for(self, pattern: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            shown = self.screen()
            if re.search(pattern, shown, re.MULTILINE):
                return shown
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} never showed; the screen:\n{shown}")
            time.sleep(0.2)

    def run(self, command: str, timeout: float = 60.0) -> list[str]:
        """Type a command, wait for the prompt after it; the lines it printed."""
        self.clear()
        self.type(command)
        shown = self.wait_for(re.escape(command) + r"\n(.*\n)*?hodei\$ ?$", timeout)
        lines = shown.rstrip("\n").split("\n")
        start = max(i for i, line in enumerate(lines) if line.endswith(command))
        return [line.rstrip() for line in lines[start + 1:-1]]

    def resize(self, width: int) -> None:
        self._run("resize-window", "-t", "t", "-x", str(width))

    def close(self) -> None:
        subprocess.run([self.tmux, "-L", self.socket, "kill-server"], capture_output=True,
                       timeout=30, check=False)


@pytest.fixture
def terminal(server: ServerProcess, tmp_path: Path) -> Iterator[Terminal]:
    tmux = _tmux_or_fail()
    env = {"HOME": str(tmp_path), "PATH": f"{BIN}:/usr/bin:/bin", "TERM": "xterm-256color",
           "LANG": "C.UTF-8", "HODEI_SERVER": server.address, "HODEI_TOKEN": server.token,
           "HODEI_CONFIG": str(tmp_path / "config.toml"),
           "HODEI_HOME": str(tmp_path / "home")}
    term = Terminal(tmux, env, width=120, height=40)
    try:
        yield term
    finally:
        term.close()


def test_a_day_with_hodeictl_in_a_terminal(terminal: Terminal) -> None:
    # Run a job and watch its output.
    out = terminal.run("hodeictl job run --name greet -- sh -c 'echo hello from tmux'")
    assert out == ["hello from tmux"]

    # List: a table fitted to the 120 columns, states whole, a short id to use next.
    listing = terminal.run("hodeictl job list")
    assert listing[0].split()[:3] == ["ID", "NAME", "STATE"]
    row = next(line for line in listing if " greet " in line)
    assert "SUCCEEDED" in row.split() and all(cell_width(line) <= 120 for line in listing)
    short_id = row.split()[0]
    assert len(short_id) == 8

    # The short id and the name both name it.
    assert terminal.run(f"hodeictl job logs {short_id}") == ["hello from tmux"]
    shown = terminal.run("hodeictl job get greet")
    assert any(re.fullmatch(r"State:\s+SUCCEEDED", line) for line in shown)

    # A narrow terminal: id, name and state stay, every line fits.
    terminal.resize(60)
    narrow = terminal.run("hodeictl job list")
    assert narrow[0].split()[:3] == ["ID", "NAME", "STATE"]
    assert all(cell_width(line) <= 60 for line in narrow), narrow
    terminal.resize(120)

    # Tab completion of commands and of job names, from the server.
    terminal.clear()
    terminal.type('eval "$(_HODEICTL_COMPLETE=source_bash hodeictl)"')
    terminal.wait_for(PROMPT_LINE)
    terminal.clear()
    terminal.type("hodeictl job get gre", enter=False)
    terminal.keys("Tab")
    terminal.wait_for(r"hodeictl job get greet\s*$")
    terminal.keys("C-u")

    # A job nobody can take: job run says why, once; Ctrl-C stops following only.
    terminal.clear()
    terminal.type("hodeictl job run --name stuck -s os=plan9 -- true")
    terminal.wait_for(r"is waiting: no worker matches os=plan9, and no provider starts one")
    terminal.keys("C-c")
    stopped = terminal.wait_for(r"Stopped following job .*; it keeps running\.")
    assert stopped.count("is waiting:") == 1
    assert terminal.run("hodeictl job cancel stuck")[0].endswith(": CANCELLED")
