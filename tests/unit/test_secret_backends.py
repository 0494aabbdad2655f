"""The built-in secret backends, on real files and a real environment mapping."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from hodei_plugins.manager import get_host
from hodei_plugins.secrets import EnvSecretBackend, FileSecretBackend, SecretError, SecretNotFound


def test_both_register_through_the_entry_point_group() -> None:
    backends = get_host().secret_backends()
    assert backends["env"] is EnvSecretBackend
    assert backends["file"] is FileSecretBackend


def test_env_backend() -> None:
    backend = EnvSecretBackend(environ={"HODEI_SECRET_DB_PASSWORD": "s3cr3t"})
    assert asyncio.run(backend.resolve("DB_PASSWORD")) == b"s3cr3t"
    with pytest.raises(SecretNotFound, match=r"\$HODEI_SECRET_OTHER is not set"):
        asyncio.run(backend.resolve("OTHER"))


def test_file_backend(tmp_path: Path) -> None:
    (tmp_path / "tls.key").write_bytes(b"-----BEGIN KEY-----\nabc\n")
    backend = FileSecretBackend(str(tmp_path))
    assert asyncio.run(backend.resolve("tls.key")) == b"-----BEGIN KEY-----\nabc\n"
    with pytest.raises(SecretNotFound):
        asyncio.run(backend.resolve("missing"))


@pytest.mark.parametrize("name", ["../etc/passwd", "a/b", "..", "", "x" * 300, "-rf"])
def test_names_that_are_paths_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(SecretError, match="is not a secret name"):
        asyncio.run(FileSecretBackend(str(tmp_path)).resolve(name))
    with pytest.raises(SecretError, match="is not a secret name"):
        asyncio.run(EnvSecretBackend(environ={}).resolve(name))


def test_a_symlink_out_of_the_directory_is_refused(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    outside = tmp_path / "outside"
    outside.write_text("not yours")
    os.symlink(outside, secrets / "escape")
    with pytest.raises(SecretError, match="points outside"):
        asyncio.run(FileSecretBackend(str(secrets)).resolve("escape"))
