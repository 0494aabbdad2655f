"""The one-line errors of the `ssh` provider."""

from __future__ import annotations

from hodei_plugins.provider import ProviderError


class HostError(ProviderError):
    """A step on one host failed: says which host, which step and why, in one line."""

    def __init__(self, host: str, step: str, why: str) -> None:
        self.host = host
        self.step = step
        self.why = " ".join(why.split())
        super().__init__(f"host {host}: {step}: {self.why}")


class HostKeyError(HostError):
    """The host's key is not the one trusted for it."""


class RegistryError(ProviderError):
    """The host registry refuses (unknown host, duplicate name, bad value)."""
