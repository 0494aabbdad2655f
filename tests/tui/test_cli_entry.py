"""`hodeictl tui` is registered without making every other command import Textual."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from hodeictl.app import app
from tests.e2e.harness import hodeictl_argv


def test_help_does_not_import_textual() -> None:
    code = ("import sys; from hodeictl.app import app; "
            "assert 'textual' not in sys.modules, 'textual imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_tui_is_a_command_with_its_options() -> None:
    result = subprocess.run([*hodeictl_argv(), "tui", "--help"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "--read-only" in result.stdout and "--screen" in result.stdout


def test_an_unknown_screen_is_one_usage_line() -> None:
    result = CliRunner().invoke(app, ["--server", "127.0.0.1:1", "tui", "--screen", "nope"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "hodeictl: --screen: 'nope' is not one of dashboard, jobs, workers, providers, "
        "secrets, tokens, audit"]
