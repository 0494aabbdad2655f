"""The command line: parsing, and bad input as one line on stderr with exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hodei_agent.config import parse_config
from hodei_agent.errors import ConfigError

GOOD_ENV = {"HODEI_BOOTSTRAP_TOKEN": "tok"}


def agent_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HODEI_")}
    return subprocess.run(
        [sys.executable, "-m", "hodei_agent", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("args", "env", "hint"),
    [
        (["--server", "localhost:50051"], {}, "HODEI_BOOTSTRAP_TOKEN"),
        ([], GOOD_ENV, "--server"),
        (["--server", "localhost"], GOOD_ENV, "HOST:PORT"),
        (["--server", "localhost:http"], GOOD_ENV, "HOST:PORT"),
        (["--server", "a:1,b:99999"], GOOD_ENV, "HOST:PORT"),
        (["--server", "a:1", "--label", "novalue"], GOOD_ENV, "KEY=VALUE"),
        (["--server", "a:1", "--label", "=v"], GOOD_ENV, "KEY=VALUE"),
        (["--server", "a:1"], {**GOOD_ENV, "HODEI_LABELS": "a=1,broken"}, "HODEI_LABELS"),
        (["--server", "a:1", "--slots", "0"], GOOD_ENV, "--slots"),
        (["--server", "a:1", "--slots", "many"], GOOD_ENV, "--slots"),
        (["--server", "a:1"], {**GOOD_ENV, "HODEI_SLOTS": "-1"}, "HODEI_SLOTS"),
        (["--server", "a:1", "--cpus", "0"], GOOD_ENV, "--cpus"),
        (["--server", "a:1", "--memory-mb", "lots"], GOOD_ENV, "--memory-mb"),
        (["--server", "a:1", "--drain-grace", "-5"], GOOD_ENV, "--drain-grace"),
        (["--server", "a:1", "--token-file", "/nonexistent/token"], {}, "--token-file"),
        (["--server", "a:1", "--log-level", "LOUD"], GOOD_ENV, "--log-level"),
        (["--server", "a:1", "--bogus"], GOOD_ENV, "--bogus"),
        (["--server", "a:1", "--cgroups", "on"], GOOD_ENV, "--cgroups"),
        (["--server", "a:1"], {**GOOD_ENV, "HODEI_AGENT_CGROUPS": "no"}, "HODEI_AGENT_CGROUPS"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], env: dict[str, str], hint: str) -> None:
    result = agent_cli(args, env)
    assert result.returncode == 2, result
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("hodei-agent: ")
    assert hint in lines[0]


def test_help_works() -> None:
    result = agent_cli(["--help"], {})
    assert result.returncode == 0
    assert "--server" in result.stdout and "--drain-grace" in result.stdout


def test_parse_everything_and_forget_the_token() -> None:
    environ = {
        "HODEI_BOOTSTRAP_TOKEN": " tok \n",
        "HODEI_LABELS": "zone=a, gpu = no",
        "HODEI_SLOTS": "2",
        "PATH": "/bin",
    }
    config = parse_config(
        [
            "--server",
            "h1:1,[::1]:2",
            "--server",
            "h3:3",
            "--label",
            "gpu=yes",
            "--label",
            "empty=",
            "--cpus",
            "1.5",
            "--memory-mb",
            "512",
            "--name",
            "w1",
            "--drain-grace",
            "0",
            "--log-level",
            "debug",
            "--insecure",
        ],
        environ,
    )
    assert config.servers == ("h1:1", "[::1]:2", "h3:3")
    assert config.bootstrap_token == "tok"
    assert "HODEI_BOOTSTRAP_TOKEN" not in environ
    assert config.labels == {"zone": "a", "gpu": "yes", "empty": ""}
    assert (config.slots, config.cpus, config.memory_mb) == (2, 1.5, 512)
    assert (config.name, config.drain_grace, config.log_level) == ("w1", 0.0, "DEBUG")


def test_defaults_from_environment_and_host(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    environ = {"HODEI_SERVER": "s1:10, s2:20", "HODEI_BOOTSTRAP_TOKEN": "from-env"}
    config = parse_config(["--token-file", str(token_file), "--insecure"], environ)
    assert config.servers == ("s1:10", "s2:20")
    assert config.bootstrap_token == "from-file"
    assert "HODEI_BOOTSTRAP_TOKEN" not in environ  # read or not, it never reaches a job
    assert config.slots == 4 and config.drain_grace == 30.0
    assert config.cpus >= 1 and config.memory_mb > 0
    assert config.name.endswith(f"-{os.getpid()}")


def test_empty_token_file_is_an_error(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("  \n")
    with pytest.raises(ConfigError, match="empty"):
        parse_config(["--server", "a:1", "--token-file", str(token_file)], {})


def test_a_state_dir_with_an_identity_needs_no_token(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with pytest.raises(ConfigError, match="HODEI_BOOTSTRAP_TOKEN"):
        parse_config(["--server", "127.0.0.1:1", "--state-dir", str(state)], {})
    state.mkdir()
    (state / "identity.json").write_text("{}")
    config = parse_config(["--server", "127.0.0.1:1"], {"HODEI_AGENT_STATE_DIR": str(state)})
    assert config.state_dir == state
    assert config.bootstrap_token == ""


def test_cgroups_are_used_unless_turned_off() -> None:
    assert parse_config(["--server", "127.0.0.1:1"], dict(GOOD_ENV)).cgroups
    assert not parse_config(["--server", "127.0.0.1:1", "--cgroups", "OFF"], dict(GOOD_ENV)).cgroups
    environ = {**GOOD_ENV, "HODEI_AGENT_CGROUPS": "off"}
    assert not parse_config(["--server", "127.0.0.1:1"], environ).cgroups
    environ = {**GOOD_ENV, "HODEI_AGENT_CGROUPS": "off"}
    assert parse_config(["--server", "127.0.0.1:1", "--cgroups", "auto"], environ).cgroups
