"""Registers the built-in `local` provider (entry point `local` of group `hodei`)."""

from __future__ import annotations

from hodei_plugins.local.provider import LocalProvider
from hodei_plugins.spec import hookimpl


@hookimpl
def hodei_register_providers() -> list[type]:
    return [LocalProvider]
