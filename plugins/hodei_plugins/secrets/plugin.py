"""Registers the built-in `env` and `file` secret backends (entry point `secrets`)."""

from __future__ import annotations

from hodei_plugins.secrets.backends import EnvSecretBackend, FileSecretBackend
from hodei_plugins.spec import hookimpl


@hookimpl
def hodei_register_secret_backends() -> list[type]:
    return [EnvSecretBackend, FileSecretBackend]
