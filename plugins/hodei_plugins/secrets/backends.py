"""The built-in `env` and `file` secret backends, and what every backend offers."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar, Protocol

from hodei_plugins.errors import PluginError

MAX_SECRET_BYTES = 1024 * 1024
# A value shorter than this could not be redacted from job output without mangling it
# (every "a" in a log), so no backend may hand one to a job.
MIN_SECRET_BYTES = 4
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,252}")


class SecretError(PluginError):
    """A secret could not be resolved."""


class SecretNotFound(SecretError):
    """No such secret."""


class SecretBackend(Protocol):
    """Resolves a secret by name. Constructed with the backend's options from the config."""

    name: ClassVar[str]

    async def resolve(self, secret: str) -> bytes:
        """The secret's value; SecretNotFound if there is none, SecretError otherwise."""
        ...


async def secret_exists(backend: SecretBackend, secret: str) -> bool:
    """Whether `backend` has `secret`: its `exists()` if it has one, else a resolve."""
    exists = getattr(backend, "exists", None)
    if exists is not None:
        return bool(await exists(secret))
    try:
        await backend.resolve(secret)
    except SecretNotFound:
        return False
    return True


def check_name(secret: str) -> str:
    """Secret names are plain: letters, digits, '_', '.', '-' (never a path)."""
    if not _NAME.fullmatch(secret) or secret in {".", ".."}:
        raise SecretError(
            f"{secret[:80]!r} is not a secret name (letters, digits, '_', '.', '-'; "
            "at most 253)"
        )
    return secret


class EnvSecretBackend:
    """Secrets from the server's environment: secret `DB_PASSWORD` is `HODEI_SECRET_DB_PASSWORD`."""

    name: ClassVar[str] = "env"

    def __init__(self, prefix: str = "HODEI_SECRET_",
                 environ: Mapping[str, str] | None = None) -> None:
        self.prefix = prefix
        self._environ = os.environ if environ is None else environ

    async def resolve(self, secret: str) -> bytes:
        variable = self.prefix + check_name(secret)
        value = self._environ.get(variable)
        if value is None:
            raise SecretNotFound(f"secret {secret!r}: ${variable} is not set on the server")
        return value.encode()


class FileSecretBackend:
    """Secrets as files in one directory: secret `tls.key` is `<directory>/tls.key`."""

    name: ClassVar[str] = "file"

    def __init__(self, directory: str = "/etc/hodei/secrets") -> None:
        self.directory = Path(directory)

    async def resolve(self, secret: str) -> bytes:
        path = self.directory / check_name(secret)
        return await asyncio.to_thread(self._read, secret, path)

    def _read(self, secret: str, path: Path) -> bytes:
        try:
            # A symlink inside the directory must not lead out of it.
            real = path.resolve(strict=True)
            if real.parent != self.directory.resolve():
                raise SecretError(f"secret {secret!r}: {path} points outside {self.directory}")
            if real.stat().st_size > MAX_SECRET_BYTES:
                raise SecretError(f"secret {secret!r} is larger than {MAX_SECRET_BYTES} bytes")
            return real.read_bytes()
        except FileNotFoundError:
            raise SecretNotFound(f"secret {secret!r}: no file {path}") from None
        except (IsADirectoryError, PermissionError) as exc:
            raise SecretError(f"secret {secret!r}: cannot read {path}: {exc.strerror}") from None
