"""Registers the built-in scheduling strategies (entry point `strategies` of group `hodei`)."""

from __future__ import annotations

from hodei_plugins.schedulers.builtin import BUILTIN_STRATEGIES
from hodei_plugins.spec import hookimpl


@hookimpl
def hodei_register_strategies() -> list[type]:
    return list(BUILTIN_STRATEGIES)
