"""The agent's exceptions; every one derives from `AgentError`, whose docstring is its message."""

from __future__ import annotations


class AgentError(Exception):
    """The agent failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.__doc__ or type(self).__name__)


class ConfigError(AgentError):
    """The agent's command line or environment is invalid."""


class RegistrationRejected(AgentError):
    """The server rejected the registration (bad or already used bootstrap token?)."""


class CredentialRejected(AgentError):
    """The server no longer accepts this worker's credential; register a new agent."""


class JobStartError(AgentError):
    """The job could not be started."""
