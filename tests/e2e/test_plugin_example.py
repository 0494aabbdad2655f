"""A third-party plugin distribution: installed, listed, extending hodeictl, disabled."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import hodeictl_argv

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "hodei-plugin-example"

pytestmark = pytest.mark.e2e


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "-q", *args], check=True, timeout=300)


@pytest.fixture(scope="module")
def installed() -> Iterator[None]:
    # No build isolation: the venv's setuptools builds it, no network needed.
    _pip("install", "--no-deps", "--no-build-isolation", "-e", str(EXAMPLE))
    try:
        yield
    finally:
        _pip("uninstall", "-y", "hodei-plugin-example")


def _hodeictl(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "HODEI_DISABLED_PLUGINS"}
    return subprocess.run([*hodeictl_argv(), *args], env={**environ, **env},
                          capture_output=True, text=True, timeout=60)


def test_example_plugin_is_listed_and_extends_hodeictl(installed: None) -> None:
    out = _hodeictl("plugin", "list", "-o", "json")
    assert out.returncode == 0, out.stderr
    plugins = {p["name"]: p for p in json.loads(out.stdout)}
    example = plugins["example"]
    assert example["distribution"] == "hodei-plugin-example"
    assert example["version"] == "0.1.0"
    assert example["status"] == "loaded"
    assert example["provides"] == ["strategy:emptiest-last"]
    assert plugins["local"]["status"] == "loaded"

    table = _hodeictl("plugin", "list")
    assert "hodei-plugin-example" in table.stdout and "emptiest-last" in table.stdout

    hello = _hodeictl("hello-plugin", "--name", "tester")
    assert hello.returncode == 0, hello.stderr
    assert hello.stdout.strip() == "hello, tester, from hodei-plugin-example"


def test_disabled_example_plugin_is_hidden(installed: None) -> None:
    out = _hodeictl("plugin", "list", "-o", "json", HODEI_DISABLED_PLUGINS="example")
    assert out.returncode == 0, out.stderr
    example = next(p for p in json.loads(out.stdout) if p["name"] == "example")
    assert example["status"] == "disabled"
    assert example["provides"] == []

    hello = _hodeictl("hello-plugin", HODEI_DISABLED_PLUGINS="example")
    assert hello.returncode == 2
    assert hello.stderr.startswith("hodeictl: no such command 'hello-plugin'")
    assert len(hello.stderr.splitlines()) == 1
