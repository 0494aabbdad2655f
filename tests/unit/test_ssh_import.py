"""Loading the ssh plugin prints nothing: `hodeictl host list` once began with six lines of
cryptography's DSA deprecation warning, raised while asyncssh imports."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", ["hodei_ssh.remote", "hodei_ssh.cli",
                                    "hodei_ssh.provider"])
def test_importing_the_ssh_plugin_writes_nothing_to_stderr(module: str) -> None:
    done = subprocess.run([sys.executable, "-W", "default", "-c", f"import {module}"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_other_warnings_of_the_process_still_show() -> None:
    code = ("import warnings, hodei_ssh.remote\n"
            "warnings.warn('DSA is deprecated, said someone else')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert "said someone else" in done.stderr
