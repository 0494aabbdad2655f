"""The built-in `hodei` secret backend: the server's encrypted store in PostgreSQL.

The encryption and the database live on the server (`hodei_server.security.secretstore`); this class
is how the store takes its place among the backends. The server constructs it with
`store=`, an object whose `async get(name) -> bytes` decrypts one secret.
"""

from __future__ import annotations

from typing import ClassVar, Protocol

from hodei_plugins.secrets.backends import check_name


class EncryptedStore(Protocol):
    async def get(self, name: str) -> bytes: ...

    async def exists(self, name: str) -> bool: ...


class HodeiSecretBackend:
    """Secrets set with `hodeictl secret set`, encrypted at rest with AES-256-GCM."""

    name: ClassVar[str] = "hodei"
    # The server hands this backend its store (`store=`) besides the configured options.
    uses_store: ClassVar[bool] = True

    def __init__(self, store: EncryptedStore) -> None:
        self._store = store

    async def resolve(self, secret: str) -> bytes:
        return await self._store.get(check_name(secret))

    async def exists(self, secret: str) -> bool:
        return await self._store.exists(check_name(secret))
