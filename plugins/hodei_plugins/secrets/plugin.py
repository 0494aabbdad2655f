"""Registers the built-in `hodei`, `env` and `file` secret backends (entry point `secrets`)."""

from __future__ import annotations

from hodei_plugins.secrets.backends import EnvSecretBackend, FileSecretBackend
from hodei_plugins.secrets.store import HodeiSecretBackend
from hodei_plugins.spec import hookimpl


@hookimpl
def hodei_register_secret_backends() -> list[type]:
    return [HodeiSecretBackend, EnvSecretBackend, FileSecretBackend]
