"""Secret backends: where the value of a secret named by a job comes from."""

from hodei_plugins.secrets.backends import (
    EnvSecretBackend,
    FileSecretBackend,
    SecretBackend,
    SecretError,
    SecretNotFound,
)

__all__ = [
    "EnvSecretBackend",
    "FileSecretBackend",
    "SecretBackend",
    "SecretError",
    "SecretNotFound",
]
