"""The `vault` secret backend: HashiCorp Vault's KV version 2 engine, through `hvac`.

Optional: `pip install 'hodei[vault]'`. Enable it in the server config:

    [secret_backends.vault]
    url = "https://vault.example.com:8200"
    token_file = "/etc/hodei/vault-token"   # or token = "...", or role_id + secret_id (AppRole)
    mount = "secret"                        # the KV v2 mount
    path = "hodei"                          # secret `db` is <mount>/data/<path>/db
    field = "value"                         # the key inside that secret holding the value

A job names such a secret as `vault:NAME`. hvac is synchronous: calls run in a thread.
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any, ClassVar

from hodei_plugins.secrets.backends import SecretError, SecretNotFound, check_name
from hodei_plugins.spec import hookimpl

MISSING_HVAC = "the vault secret backend needs hvac: pip install 'hodei[vault]'"


def _import_hvac() -> Any:
    try:
        import hvac
    except ImportError:
        raise SecretError(MISSING_HVAC) from None
    return hvac


class VaultSecretBackend:
    """Secret `NAME` is field `field` of the KV v2 secret `<path>/NAME` in mount `mount`."""

    name: ClassVar[str] = "vault"

    def __init__(
        self,
        url: str = "",
        token: str = "",
        token_file: str = "",
        role_id: str = "",
        secret_id: str = "",
        mount: str = "secret",
        path: str = "hodei",
        field: str = "value",
        namespace: str = "",
        timeout: float = 10.0,
        verify: bool = True,
    ) -> None:
        if not url.startswith(("https://", "http://")):
            raise SecretError(f"vault: url must be http(s)://HOST:PORT, got {url!r}")
        if token_file:
            try:
                token = token or Path(token_file).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise SecretError(f"vault: cannot read token_file {token_file}: "
                                  f"{exc.strerror or exc}") from None
        token = token or os.environ.get("VAULT_TOKEN", "")
        if bool(role_id) != bool(secret_id):
            raise SecretError("vault: AppRole needs both role_id and secret_id")
        if token and role_id:
            raise SecretError("vault: give either a token or role_id/secret_id, not both")
        if not token and not role_id:
            raise SecretError("vault: give token, token_file, role_id/secret_id or $VAULT_TOKEN")
        if not mount.strip("/") or not path.strip("/") or not field:
            raise SecretError("vault: mount, path and field must not be empty")
        if not (0 < timeout <= 300):
            raise SecretError("vault: timeout must be between 0 and 300 seconds")
        hvac = _import_hvac()
        self.url = url
        self.mount = mount.strip("/")
        self.path = path.strip("/")
        self.field = field
        self._role = (role_id, secret_id)
        self._exceptions = hvac.exceptions
        self._client = hvac.Client(url=url, token=token or None, timeout=timeout,
                                   namespace=namespace or None, verify=verify)
        self._login = threading.Lock()

    async def resolve(self, secret: str) -> bytes:
        return await asyncio.to_thread(self._read, check_name(secret))

    def _read(self, secret: str) -> bytes:
        errors = self._exceptions
        location = f"{self.mount}/{self.path}/{secret}"
        try:
            self._authenticate()
            response = self._client.secrets.kv.v2.read_secret_version(
                path=f"{self.path}/{secret}", mount_point=self.mount,
                raise_on_deleted_version=True,
            )
        except errors.InvalidPath:
            raise SecretNotFound(f"secret 'vault:{secret}': no {location} in Vault") from None
        except (errors.Forbidden, errors.Unauthorized):
            raise SecretError(f"secret 'vault:{secret}': Vault refused to read {location}"
                              ) from None
        except errors.VaultError as exc:
            raise SecretError(f"secret 'vault:{secret}': Vault error: "
                              f"{type(exc).__name__}") from None
        except OSError as exc:  # requests' ConnectionError and timeouts are OSErrors
            raise SecretError(f"secret 'vault:{secret}': cannot reach Vault at {self.url} "
                              f"({type(exc).__name__})") from None
        data = ((response or {}).get("data") or {}).get("data") or {}
        value = data.get(self.field)
        if not isinstance(value, str):
            raise SecretNotFound(f"secret 'vault:{secret}': {location} has no string field "
                                 f"{self.field!r}")
        return value.encode()

    def _authenticate(self) -> None:
        role_id, secret_id = self._role
        if not role_id:
            return
        with self._login:
            if not self._client.token:
                self._client.auth.approle.login(role_id=role_id, secret_id=secret_id)


@hookimpl
def hodei_register_secret_backends() -> list[type]:
    return [VaultSecretBackend]
