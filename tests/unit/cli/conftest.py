"""Every hodeictl test runs with its own config file and home directory."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the user's config or home, or a server from the environment."""
    monkeypatch.setenv("HODEI_CONFIG", str(tmp_path / "config" / "config.toml"))
    monkeypatch.setenv("HODEI_HOME", str(tmp_path / "home"))
    for name in ("HODEI_SERVER", "HODEI_CONTEXT", "HODEI_DATABASE_URL", "HODEI_DEBUG",
                 "HODEI_TOKEN", "HODEI_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
