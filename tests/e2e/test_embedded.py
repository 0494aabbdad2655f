"""A newcomer's first command: no server configured, the embedded stack starts."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import hodeictl_argv

pytestmark = pytest.mark.e2e


@pytest.fixture
def newcomer(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of someone with no config and no server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HODEI_")}
    env["HODEI_HOME"] = str(tmp_path / "home")
    env["HODEI_CONFIG"] = str(tmp_path / "config.toml")
    yield env
    subprocess.run([*hodeictl_argv(), "down"], env=env, capture_output=True, timeout=90)


def hodeictl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*hodeictl_argv(), *args], env=env, capture_output=True, timeout=180)


def test_first_command_starts_the_stack_and_later_ones_reuse_it(
    newcomer: dict[str, str],
) -> None:
    first = hodeictl(newcomer, "job", "run", "--", "sh", "-c", "echo hello; echo oops >&2; exit 3")
    assert first.returncode == 3, first.stderr
    assert first.stdout == b"hello\n"
    notes = first.stderr.decode().splitlines()
    assert len([n for n in notes if "Started a local Hodei stack" in n]) == 1
    assert notes[-1] == "oops"
    stack = json.loads((Path(newcomer["HODEI_HOME"]) / "stack.json").read_text())

    second = hodeictl(newcomer, "job", "run", "--", "echo", "again")
    assert second.returncode == 0
    assert second.stdout == b"again\n"
    assert second.stderr == b""  # reused: no second start
    assert json.loads((Path(newcomer["HODEI_HOME"]) / "stack.json").read_text()) == stack

    status = hodeictl(newcomer, "status")
    assert status.returncode == 0
    assert stack["address"].encode() in status.stdout

    listing = json.loads(hodeictl(newcomer, "job", "list", "-o", "json").stdout)
    assert len(listing) == 2

    down = hodeictl(newcomer, "down")
    assert down.returncode == 0
    assert not (Path(newcomer["HODEI_HOME"]) / "stack.json").exists()
    assert not Path(f"/proc/{stack['pid']}").exists() or _is_zombie(stack["pid"])


def test_the_stack_keeps_its_jobs_across_restarts(newcomer: dict[str, str]) -> None:
    out = hodeictl(newcomer, "job", "submit", "--", "echo", "persisted")
    job_id = out.stdout.decode().strip()
    assert hodeictl(newcomer, "up", "--detach").returncode == 0  # already running: a no-op
    assert hodeictl(newcomer, "down").returncode == 0
    assert hodeictl(newcomer, "up", "--detach").returncode == 0
    logs = hodeictl(newcomer, "job", "logs", "--follow", job_id)
    assert logs.returncode == 0
    assert logs.stdout == b"persisted\n"


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def _exposed(home: Path) -> list[str]:
    """Everything in `home` (itself included) that its user's group or others may use."""
    found = []
    for path in [home, *home.rglob("*")]:
        if path.is_symlink():
            continue
        mode = path.lstat().st_mode & 0o777
        if mode & 0o077:
            found.append(f"{path.relative_to(home.parent)} {mode:o}")
    return found


def test_the_home_and_everything_in_it_are_private_across_restarts(
    newcomer: dict[str, str],
) -> None:
    """With the real private PostgreSQL (which, run as root, runs as a user of its own)."""
    home = Path(newcomer["HODEI_HOME"])

    def check() -> None:
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
        assert stat.S_IMODE((home / "stack.log").stat().st_mode) == 0o600
        assert _exposed(home) == []

    assert hodeictl(newcomer, "up", "--detach").returncode == 0
    ran = hodeictl(newcomer, "job", "run", "--", "echo", "private")
    assert (ran.returncode, ran.stdout) == (0, b"private\n"), ran.stderr
    check()
    assert hodeictl(newcomer, "down").returncode == 0
    assert hodeictl(newcomer, "up", "--detach").returncode == 0
    check()
    # After a crash too.
    os.kill(json.loads((home / "stack.json").read_text())["pid"], signal.SIGKILL)
    assert hodeictl(newcomer, "up", "--detach").returncode == 0
    again = hodeictl(newcomer, "job", "run", "--", "echo", "again")
    assert (again.returncode, again.stdout) == (0, b"again\n"), again.stderr
    check()
