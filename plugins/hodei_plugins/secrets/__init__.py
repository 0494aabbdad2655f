"""Secret backends: where the value of a secret named by a job comes from."""

from hodei_plugins.secrets.backends import (
    MAX_SECRET_BYTES,
    MIN_SECRET_BYTES,
    EnvSecretBackend,
    FileSecretBackend,
    SecretBackend,
    SecretError,
    SecretNotFound,
    check_name,
    secret_exists,
)
from hodei_plugins.secrets.store import HodeiSecretBackend

__all__ = [
    "MAX_SECRET_BYTES",
    "MIN_SECRET_BYTES",
    "EnvSecretBackend",
    "FileSecretBackend",
    "HodeiSecretBackend",
    "SecretBackend",
    "SecretError",
    "SecretNotFound",
    "check_name",
    "secret_exists",
]
