"""The built-in `local` provider: agents as subprocesses of the server's host."""

from hodei_plugins.local.provider import LocalProvider, LocalProviderConfig

__all__ = ["LocalProvider", "LocalProviderConfig"]
