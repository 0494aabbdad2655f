"""The keys that encrypt the built-in secret store, and the encryption itself (AES-256-GCM).

The database never holds a key. Keys come from a key file (server config `secret_key_file`,
mode 0600, created by `hodei-server secret-key create`) or from `$HODEI_SECRETS_KEY`: one
base64-encoded 32-byte key per line (or comma-separated in the variable), the first one
current. A key's id is a fingerprint stored beside each ciphertext, so older keys kept
further down the file still decrypt what they encrypted: rotate by adding a new first line
(`hodei-server secret-key rotate`), then re-encrypt (`hodei-server secret-key reencrypt`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hodei_server.errors import ConfigError, HodeiError

KEY_ENV = "HODEI_SECRETS_KEY"
KEY_BYTES = 32
NONCE_BYTES = 12
_AAD_PREFIX = b"hodei-secret:v1:"
HOW_TO_CONFIGURE = (
    "no secret key is configured: create one with 'hodei-server secret-key create --file "
    "PATH' and set secret_key_file = \"PATH\" in the server config (or set "
    f"${KEY_ENV})"
)


class SecretKeyError(HodeiError):
    """The secret store's key is missing or does not fit."""


class NoSecretKey(SecretKeyError):
    __doc__ = HOW_TO_CONFIGURE


def key_id(key: bytes) -> str:
    """The fingerprint of a key: what the database holds instead of it."""
    return hashlib.sha256(b"hodei-secret-key\x00" + key).hexdigest()[:16]


@dataclass(frozen=True)
class Sealed:
    key_id: str
    nonce: bytes
    ciphertext: bytes


def _aad(name: str) -> bytes:
    return _AAD_PREFIX + name.encode()


def _parse_keys(text: str, where: str) -> list[bytes]:
    keys: list[bytes] = []
    for number, line in enumerate(text.replace(",", "\n").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            key = base64.b64decode(line, validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(f"{where}: entry {number} is not base64") from None
        if len(key) != KEY_BYTES:
            raise ConfigError(f"{where}: entry {number} is not a {KEY_BYTES}-byte key "
                              f"(got {len(key)} bytes)")
        keys.append(key)
    return keys


class Keyring:
    """The current key (encrypts) and every configured key by id (decrypts)."""

    def __init__(self, keys: list[bytes]) -> None:
        self._keys = {key_id(k): k for k in keys}
        self.current_id = key_id(keys[0]) if keys else ""

    @property
    def configured(self) -> bool:
        return bool(self.current_id)

    @classmethod
    def load(cls, key_file: str = "", environ: dict[str, str] | None = None) -> Keyring:
        """Keys from `key_file` (if given) and `$HODEI_SECRETS_KEY`; the file's come first."""
        env = os.environ if environ is None else environ
        keys: list[bytes] = []
        if key_file:
            keys += _parse_keys(_read_key_file(Path(key_file)), key_file)
        if env.get(KEY_ENV):
            keys += _parse_keys(env[KEY_ENV], f"${KEY_ENV}")
        return cls(keys)

    def seal(self, name: str, value: bytes) -> Sealed:
        if not self.configured:
            raise NoSecretKey()
        nonce = os.urandom(NONCE_BYTES)
        ciphertext = AESGCM(self._keys[self.current_id]).encrypt(nonce, value, _aad(name))
        return Sealed(self.current_id, nonce, ciphertext)

    def open(self, name: str, sealed: Sealed) -> bytes:
        if not self.configured:
            raise NoSecretKey()
        key = self._keys.get(sealed.key_id)
        if key is None:
            raise SecretKeyError(
                f"secret {name!r} is encrypted with key {sealed.key_id}, which is not "
                "configured (an older key must stay in the key file until re-encrypted)"
            )
        try:
            return AESGCM(key).decrypt(sealed.nonce, sealed.ciphertext, _aad(name))
        except InvalidTag:
            raise SecretKeyError(
                f"secret {name!r} does not decrypt: its ciphertext was altered or belongs "
                "to another name"
            ) from None


def _read_key_file(path: Path) -> str:
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise ConfigError(
            f"secret key file {path} does not exist; create it with "
            f"'hodei-server secret-key create --file {path}'"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read secret key file {path}: {exc}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"secret key file {path} is accessible by others (mode {stat.S_IMODE(mode):04o}); "
            f"chmod 600 {path}"
        )
    return text


def new_key_line() -> str:
    return base64.b64encode(AESGCM.generate_key(bit_length=KEY_BYTES * 8)).decode() + "\n"


def create_key_file(path: Path) -> str:
    """Write a new key file (mode 0600; never overwrites); returns the key's id."""
    line = new_key_line()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as file:
        file.write(line)
    return key_id(base64.b64decode(line))


def rotate_key_file(path: Path) -> str:
    """Put a new current key at the top of the key file, keeping the older ones."""
    old = _read_key_file(path)
    _parse_keys(old, str(path))
    line = new_key_line()
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as file:
        file.write(line + old)
    tmp.replace(path)
    return key_id(base64.b64decode(line))


def ensure_key_file(path: Path) -> None:
    """Create the key file if it does not exist (the embedded stack's first start)."""
    if not path.exists():
        try:
            create_key_file(path)
        except FileExistsError:
            pass  # another process made it first
