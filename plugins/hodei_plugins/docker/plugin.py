"""Registers the `docker` provider (entry point `docker` of group `hodei`).

The docker SDK is imported only when a `docker` provider is started, so this plugin loads
(and `hodeictl plugin list` shows it) without the `hodei[docker]` extra.
"""

from __future__ import annotations

from hodei_plugins.docker.provider import DockerProvider
from hodei_plugins.spec import hookimpl


@hookimpl
def hodei_register_providers() -> list[type]:
    return [DockerProvider]
