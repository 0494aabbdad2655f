"""The `docker` provider: one agent container per worker on a Docker engine."""

from hodei_plugins.docker.provider import DockerProvider, DockerProviderConfig

__all__ = ["DockerProvider", "DockerProviderConfig"]
