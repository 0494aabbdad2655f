"""What became of one plugin: the record `hodeictl plugin list` prints, for this
installation (hodei_plugins.manager) or for a server (its ServerInfo). Light on purpose:
the CLI builds it from a server's reply without loading any plugin."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

LOADED = "loaded"
DISABLED = "disabled"
FAILED = "failed"


@dataclass
class PluginInfo:
    """One entry point of group `hodei` and what became of it."""

    name: str
    module: str
    distribution: str
    version: str
    status: str
    reason: str = ""
    # What it registered, e.g. "provider:local", "strategy:round-robin".
    provides: list[str] = field(default_factory=list)

    @property
    def provides_text(self) -> str:
        """`provider: local; strategy: a, b`."""
        kinds: dict[str, list[str]] = {}
        for item in self.provides:
            kind, _, value = item.partition(":")
            kinds.setdefault(kind, []).append(value)
        return "; ".join(f"{kind}: {', '.join(values)}" for kind, values in kinds.items())

    @property
    def status_text(self) -> str:
        return f"{self.status}: {self.reason}" if self.reason else self.status

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "module": self.module,
            "distribution": self.distribution,
            "version": self.version,
            "status": self.status,
            "reason": self.reason,
            "provides": list(self.provides),
        }
