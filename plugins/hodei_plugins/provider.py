"""What every provider's configuration has in common, and what a provider must offer."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import TracebackType
from typing import ClassVar, Protocol, Self, runtime_checkable

from hodei_plugins.errors import PluginError


class ProviderError(PluginError):
    """A provider cannot do its work; the message is one line, meant for the operator.

    Providers translate their SDK's errors into this (or a subclass) at their edge, so the
    server reports them in one line instead of a traceback.
    """


@dataclass(frozen=True)
class ProviderConfig:
    """The keys of every `[[providers]]` table; a provider's `config_class` extends it."""

    name: str = ""
    min_workers: int = 0
    max_workers: int = 2
    slots: int = 4
    # Each worker runs one job, then is drained and removed.
    ephemeral: bool = False
    idle_timeout: float = 300.0
    # A started agent that has not connected once after this long is taken for one that
    # never will: it is stopped and replaced.
    connect_timeout: float = 60.0
    labels: dict[str, str] = field(default_factory=dict)
    # Scheduling strategy for jobs that only this provider's workers can take; "" = default.
    strategy: str = ""


class Provider(Protocol):
    """Starts and stops workers (agents). The async work lives here, not in the hooks."""

    type_name: ClassVar[str]
    config_class: ClassVar[type[ProviderConfig]]

    @property
    def config(self) -> ProviderConfig: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def create_worker(
        self, *, name: str, bootstrap_token: str, server_address: str,
        labels: dict[str, str], slots: int, ca_cert: str = "",
    ) -> str:
        """Start one agent; return its opaque infrastructure id.

        `ca_cert` is the path of the CA certificate the agent must verify the server with
        (`hodei-agent --ca-cert`); it is passed only when the server speaks TLS.
        """
        ...

    async def destroy_worker(self, infra_id: str) -> None:
        """Stop the agent (gracefully first)."""
        ...

    def forget_exited(self) -> list[str]:
        """Infra ids of agents that exited by themselves since the last call."""
        ...


@runtime_checkable
class AdoptsWorkers(Protocol):
    """A provider that can take over the workers a previous server process started and
    left running (it was killed, or stopped without stopping them)."""

    async def adopt_workers(self, *, server_address: str) -> dict[str, str]:
        """Take them over, so that they are this provider's to restart and to stop; return
        each one's worker name and infra id. Called once, before the first reconcile, with
        the address this server's agents dial."""
        ...
