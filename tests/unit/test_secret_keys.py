"""The secret store's keys and AES-GCM sealing, on real key files."""

from __future__ import annotations

import base64
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from hodei_server.embedded import embedded_config
from hodei_server.errors import ConfigError
from hodei_server.security.secretkeys import (
    KEY_ENV,
    Keyring,
    NoSecretKey,
    SecretKeyError,
    create_key_file,
    key_id,
    rotate_key_file,
)

VALUE = b"-----BEGIN KEY-----\nabc\n-----END KEY-----\n"


def test_a_created_key_file_is_private_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "secret.key"
    kid = create_key_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Keyring.load(str(path), environ={}).current_id == kid
    with pytest.raises(FileExistsError):
        create_key_file(path)


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    create_key_file(path)
    path.chmod(0o644)
    with pytest.raises(ConfigError, match=r"accessible by others.*chmod 600"):
        Keyring.load(str(path), environ={})


def test_bad_key_material_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    path.write_text("not base64!\n")
    path.chmod(0o600)
    with pytest.raises(ConfigError, match="not base64"):
        Keyring.load(str(path), environ={})
    with pytest.raises(ConfigError, match="32-byte"):
        Keyring.load("", environ={KEY_ENV: base64.b64encode(b"short").decode()})
    with pytest.raises(ConfigError, match=r"does not exist.*secret-key create"):
        Keyring.load(str(tmp_path / "missing"), environ={})


def test_seal_binds_the_name_and_the_key() -> None:
    key = os.urandom(32)
    ring = Keyring.load("", environ={KEY_ENV: base64.b64encode(key).decode()})
    sealed = ring.seal("TLS", VALUE)
    assert sealed.key_id == key_id(key) and VALUE not in sealed.ciphertext
    assert ring.open("TLS", sealed) == VALUE
    with pytest.raises(SecretKeyError, match="does not decrypt"):
        ring.open("OTHER", sealed)
    tampered = type(sealed)(sealed.key_id, sealed.nonce, sealed.ciphertext[:-1] + b"\0")
    with pytest.raises(SecretKeyError, match="does not decrypt"):
        ring.open("TLS", tampered)
    with pytest.raises(SecretKeyError, match="not configured"):
        Keyring([os.urandom(32)]).open("TLS", sealed)
    # Two seals of one value never look alike (a fresh nonce each time).
    assert ring.seal("TLS", VALUE).ciphertext != sealed.ciphertext


def test_without_a_key_sealing_says_how_to_configure_one() -> None:
    with pytest.raises(NoSecretKey) as caught:
        Keyring([]).seal("X", VALUE)
    message = str(caught.value)
    assert "hodei-server secret-key create" in message and "secret_key_file" in message
    assert "\n" not in message


def test_rotation_keeps_old_ciphertexts_readable(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    first = create_key_file(path)
    old = Keyring.load(str(path), environ={}).seal("DB", VALUE)
    second = rotate_key_file(path)
    ring = Keyring.load(str(path), environ={})
    assert ring.current_id == second != first
    assert ring.open("DB", old) == VALUE
    assert ring.seal("DB", VALUE).key_id == second
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_the_cli_creates_a_key_file_once(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    argv = [sys.executable, "-m", "hodei_server", "secret-key", "create", "--file", str(path)]
    first = subprocess.run(argv, capture_output=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert b"mode 0600" in first.stdout
    again = subprocess.run(argv, capture_output=True, timeout=60)
    assert again.returncode == 1 and b"already exists" in again.stderr
    assert b"Traceback" not in again.stderr


def test_the_embedded_stack_makes_its_key_on_first_use(tmp_path: Path) -> None:
    config = embedded_config("postgresql://unused", "127.0.0.1:0", tmp_path)
    path = Path(config.secret_key_file)
    assert path.parent == tmp_path and stat.S_IMODE(path.stat().st_mode) == 0o600
    content = path.read_bytes()
    embedded_config("postgresql://unused", "127.0.0.1:0", tmp_path)
    assert path.read_bytes() == content  # reused, not replaced
