"""The embedded local stack, played by a stand-in: find, start (detached, once), status, stop."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hodeictl_fakes import FAKE_STACK_MODULE, install_fake_stack, invoke

from hodeictl import embedded


@pytest.fixture
def home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """HODEI_HOME for a stand-in stack; whatever it started is stopped afterwards."""
    install_fake_stack(monkeypatch, tmp_path)
    monkeypatch.setattr(embedded, "STACK_MODULE", FAKE_STACK_MODULE)
    home = Path(os.environ["HODEI_HOME"])
    yield home
    embedded.stop(home)


def stack_pid(home: Path) -> int:
    return int(json.loads((home / "stack.json").read_text())["pid"])


def test_a_command_starts_the_stack_once_then_reuses_it(home: Path) -> None:
    first = invoke("job", "list", "-o", "json")
    assert first.exit_code == 0, first.output
    assert first.stdout == "[]\n"
    address = json.loads((home / "stack.json").read_text())["address"]
    assert first.stderr == (
        f"Started a local Hodei stack at {address} (logs: {home / 'stack.log'}); "
        "stop it with 'hodeictl down'.\n"
    )
    pid = stack_pid(home)

    second = invoke("worker", "list", "-o", "json")
    assert second.exit_code == 0, second.output
    assert second.stderr == ""
    assert [w["id"] for w in json.loads(second.stdout)] == ["w1"]
    assert stack_pid(home) == pid
    assert "fake stack starting" in (home / "stack.log").read_text()


def test_concurrent_starts_share_one_stack(home: Path) -> None:
    pids: list[int] = []

    def start() -> None:
        pids.append(embedded.ensure_running(home, None).pid)

    threads = [threading.Thread(target=start) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(pids) == 3
    assert len(set(pids)) == 1
    assert (home / "stack.log").read_text().count("fake stack starting") == 1


def test_up_status_down(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HODEI_DATABASE_URL", "postgresql://alice:s3cret@db.example/hodei")
    stopped = invoke("status")
    assert stopped.exit_code == 3
    assert "not running" in stopped.stdout

    up = invoke("up", "--detach")
    assert up.exit_code == 0, up.output
    assert up.stderr.startswith("Started a local Hodei stack at 127.0.0.1:")
    again = invoke("up", "--detach")
    assert again.exit_code == 0
    assert again.stderr.startswith("A local Hodei stack is already running at 127.0.0.1:")

    status = invoke("status")
    assert status.exit_code == 0, status.output
    assert f"running (pid {stack_pid(home)}" in status.stdout
    # The stack got the database from the environment; its password is not shown.
    assert "postgresql://alice:***@db.example/hodei" in status.stdout
    assert "s3cret" not in status.stdout
    assert "answering, 1 worker" in status.stdout

    pid = stack_pid(home)
    down = invoke("down")
    assert down.exit_code == 0
    assert down.stderr == f"Stopped the local Hodei stack (pid {pid}).\n"
    assert not (home / "stack.json").exists()
    nothing = invoke("down")
    assert nothing.exit_code == 0
    assert nothing.stderr == "No local Hodei stack is running.\n"


def test_a_stack_that_fails_to_start_is_one_line(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_STACK_FAIL", "1")
    result = invoke("job", "list")
    assert result.exit_code == 69
    assert result.stderr == (
        "hodeictl: the local Hodei stack exited with code 3 before it was ready; "
        f"see {home / 'stack.log'}: boom: cannot start PostgreSQL\n"
    )


def test_a_stale_stack_file_is_not_a_running_stack(home: Path) -> None:
    home.mkdir(parents=True)
    dead = {"pid": 2**22 + 12345, "address": "127.0.0.1:1", "database_url": "", "started_at": 0}
    (home / "stack.json").write_text(json.dumps(dead))
    assert embedded.read_stack(home) is None
    (home / "stack.json").write_text(json.dumps({**dead, "pid": os.getpid()}))
    assert embedded.read_stack(home) is None  # alive, but not a stack process
    (home / "stack.json").write_text("{half a fi")
    assert embedded.read_stack(home) is None


def test_home_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("HODEI_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert embedded.home_dir() == tmp_path / "data" / "hodei"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert embedded.home_dir() == tmp_path / ".local" / "share" / "hodei"


def test_stop_waits_for_the_stack_to_exit(home: Path) -> None:
    info = embedded.ensure_running(home, None)
    started = time.monotonic()
    assert embedded.stop(home) == f"Stopped the local Hodei stack (pid {info.pid})."
    assert time.monotonic() - started < embedded.STOP_TIMEOUT
    assert embedded.read_stack(home) is None


def test_the_config_file_can_name_the_stack_database(home: Path) -> None:
    config = Path(os.environ["HODEI_CONFIG"])
    config.parent.mkdir(parents=True)
    config.write_text('[embedded]\ndatabase_url = "postgresql://bob@pg.example/hodei"\n')
    assert invoke("up", "-d").exit_code == 0
    info = embedded.read_stack(home)
    assert info is not None
    assert info.database_url == "postgresql://bob@pg.example/hodei"
