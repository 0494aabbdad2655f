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


# ---- the built-in store's registration and the optional vault backend -----------------

def test_hodei_and_vault_register_through_the_entry_point_group() -> None:
    from hodei_plugins.secrets import HodeiSecretBackend
    from hodei_plugins.secrets.vault import VaultSecretBackend

    backends = get_host().secret_backends()
    assert backends["hodei"] is HodeiSecretBackend
    assert backends["vault"] is VaultSecretBackend


def test_secret_exists_falls_back_to_resolve() -> None:
    from hodei_plugins.secrets import secret_exists

    backend = EnvSecretBackend(environ={"HODEI_SECRET_A": "value"})
    assert asyncio.run(secret_exists(backend, "A")) is True
    assert asyncio.run(secret_exists(backend, "B")) is False


@pytest.mark.parametrize(("options", "message"), [
    ({"url": "vault.example.com"}, "url must be http"),
    ({"url": "http://127.0.0.1:8200", "role_id": "r"}, "needs both role_id and secret_id"),
    ({"url": "http://127.0.0.1:8200", "token": "t", "role_id": "r", "secret_id": "s"},
     "either a token or role_id"),
    ({"url": "http://127.0.0.1:8200"}, "give token, token_file, role_id"),
    ({"url": "http://127.0.0.1:8200", "token": "t", "path": "/"}, "must not be empty"),
    ({"url": "http://127.0.0.1:8200", "token_file": "/nonexistent/token"},
     "cannot read token_file"),
])
def test_vault_config_is_validated(
    options: dict[str, str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hodei_plugins.secrets.vault import VaultSecretBackend

    monkeypatch.delenv("VAULT_TOKEN", raising=False)
    with pytest.raises(SecretError, match=message):
        VaultSecretBackend(**options)  # type: ignore[arg-type]


def test_vault_without_hvac_says_which_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from hodei_plugins.secrets.vault import MISSING_HVAC, VaultSecretBackend

    monkeypatch.setitem(sys.modules, "hvac", None)  # import hvac -> ImportError
    with pytest.raises(SecretError) as caught:
        VaultSecretBackend(url="http://127.0.0.1:8200", token="t")
    assert str(caught.value) == MISSING_HVAC == (
        "the vault secret backend needs hvac: pip install 'hodei[vault]'")


def test_vault_unreachable_is_an_error_without_the_token(tmp_path: Path) -> None:
    import socket

    from hodei_plugins.secrets.vault import VaultSecretBackend

    pytest.importorskip("hvac")
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    token_file = tmp_path / "token"
    token_file.write_text("hvs.not-a-real-token\n")
    backend = VaultSecretBackend(url=f"http://127.0.0.1:{port}", token_file=str(token_file),
                                 timeout=2)
    with pytest.raises(SecretError, match=r"cannot reach Vault at http://127\.0\.0\.1") as caught:
        asyncio.run(backend.resolve("db"))
    assert "hvs.not-a-real-token" not in str(caught.value)
    with pytest.raises(SecretError, match="is not a secret name"):
        asyncio.run(backend.resolve("../db"))
