"""The config file: named contexts (servers), the current one, and embedded-stack settings.

```toml
current_context = "prod"
[contexts.prod]
server = "hodei.example.com:50051"
token_file = "~/.config/hodei/prod.token"   # or: token = "hodei_…" (the file is 0600)
ca_cert = "/etc/hodei/ca.crt"      # optional: speak TLS, verifying the server with this CA
[embedded]
database_url = "postgresql://user@host/db"
```
Keys hodeictl does not know, comments and the file's layout are kept when it rewrites the
file: it is read with tomllib and written back with tomlkit, changing only what changed.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

from hodeictl import tomlfile, values
from hodeictl.errors import InvalidConfig, NotFound, UsageError

# The reserved context name for the embedded local stack.
LOCAL_CONTEXT = "local"

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_TOML_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def config_path() -> Path:
    """`$HODEI_CONFIG`, else `$XDG_CONFIG_HOME/hodei/config.toml`, else `~/.config/...`."""
    if explicit := os.environ.get("HODEI_CONFIG"):
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "hodei" / "config.toml"


class Config:
    """The parsed config file; `save()` writes it back."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data
        self._validate()

    @classmethod
    def load(cls, path: Path | None = None) -> Config:
        """Read the config file; a missing file is an empty config."""
        path = path or config_path()
        try:
            return cls(path, tomlfile.load(path, "config file"))
        except FileNotFoundError:
            return cls(path, {})
        except tomlfile.TomlFileError as error:
            raise InvalidConfig(str(error)) from None

    def _validate(self) -> None:
        current = self.data.get("current_context")
        if current is not None and not isinstance(current, str):
            raise InvalidConfig(f"{self.path}: 'current_context' must be a string")
        contexts = self.data.get("contexts", {})
        if not isinstance(contexts, dict):
            raise InvalidConfig(f"{self.path}: 'contexts' must be a table")
        for name, context in contexts.items():
            if not isinstance(context, dict) or not isinstance(context.get("server"), str):
                raise InvalidConfig(f"{self.path}: context '{name}' needs a 'server' string")
            for key in ("token", "token_file"):
                if not isinstance(context.get(key, ""), str):
                    raise InvalidConfig(f"{self.path}: context '{name}': '{key}' must be a "
                                        "string")
            if not isinstance(context.get("ca_cert", ""), str):
                raise InvalidConfig(f"{self.path}: context '{name}': 'ca_cert' must be a path")
        embedded = self.data.get("embedded", {})
        if not isinstance(embedded, dict):
            raise InvalidConfig(f"{self.path}: 'embedded' must be a table")
        url = embedded.get("database_url")
        if url is not None and not isinstance(url, str):
            raise InvalidConfig(f"{self.path}: 'embedded.database_url' must be a string")

    @property
    def current_context(self) -> str | None:
        """The context used when neither --server nor --context is given."""
        return self.data.get("current_context") or None

    @property
    def contexts(self) -> dict[str, str]:
        """Context name → server address."""
        return {name: c["server"] for name, c in self.data.get("contexts", {}).items()}

    @property
    def embedded_database_url(self) -> str | None:
        """The external PostgreSQL the embedded stack should use, if any."""
        return self.data.get("embedded", {}).get("database_url") or None

    def server_for(self, context: str) -> str:
        """The server address of `context`; raises NotFound, or InvalidConfig when the
        file names no valid address for it."""
        try:
            server = self.contexts[context]
        except KeyError:
            known = ", ".join([LOCAL_CONTEXT, *sorted(self.contexts)])
            raise NotFound(
                f"context {values.shown(context)} not found in {self.path} (known: {known})"
            ) from None
        try:
            return values.server_address(server)
        except ValueError as error:
            raise InvalidConfig(f"{self.path}: context {values.shown(context)}: {error}; "
                                f"set it again with hodeictl context set") from None

    def token_for(self, context: str) -> str:
        """The API token of `context`: its `token`, else the contents of its `token_file`."""
        self.server_for(context)
        entry = self.data["contexts"][context]
        if entry.get("token"):
            return str(entry["token"]).strip()
        if entry.get("token_file"):
            path = Path(entry["token_file"]).expanduser()
            try:
                return path.read_text(encoding="utf-8").strip()
            except (OSError, ValueError) as error:  # ValueError: not UTF-8, or a NUL
                reason = getattr(error, "strerror", None) or error
                raise InvalidConfig(
                    f"context '{context}': cannot read its token file {path}: {reason}"
                ) from None
        return ""

    def ca_cert_for(self, context: str) -> str | None:
        """The CA certificate path of `context` (TLS), or None (plaintext)."""
        self.server_for(context)
        return self.data["contexts"][context].get("ca_cert") or None

    def set_context(
        self, name: str, server: str, *, token: str | None = None,
        token_file: str | None = None, ca_cert: str | None = None,
    ) -> None:
        """Create or update a context; a new token or token file replaces the old one;
        `ca_cert` "" removes its CA certificate."""
        if name == LOCAL_CONTEXT:
            raise UsageError(f"'{LOCAL_CONTEXT}' is reserved for the embedded local stack")
        try:
            values.context_name(name)
            values.server_address(server)
        except ValueError as error:
            raise UsageError(str(error)) from None
        entry = self.data.setdefault("contexts", {}).setdefault(name, {})
        entry["server"] = server
        if token is not None or token_file is not None:
            entry.pop("token", None)
            entry.pop("token_file", None)
        if token:
            entry["token"] = token
        if token_file:
            entry["token_file"] = token_file
        if ca_cert:
            entry["ca_cert"] = ca_cert
        elif ca_cert == "":
            entry.pop("ca_cert", None)

    def delete_context(self, name: str) -> bool:
        """Remove context `name`; whether it was the current one (then `local` is)."""
        if name == LOCAL_CONTEXT:
            raise UsageError(f"'{LOCAL_CONTEXT}' is the embedded local stack; it cannot be "
                             "deleted")
        self.server_for(name)  # NotFound, listing the known ones
        del self.data["contexts"][name]
        if self.current_context == name:
            self.data.pop("current_context", None)
            return True
        return False

    def view(self, name: str) -> dict[str, str]:
        """What context `name` holds, the token itself never shown."""
        self.server_for(name)
        entry = self.data["contexts"][name]
        token = ("in the config file" if entry.get("token") else
                 f"from {entry['token_file']}" if entry.get("token_file") else "none")
        return {"name": name, "server": entry["server"], "token": token,
                "ca_cert": entry.get("ca_cert") or "none (plaintext)",
                "current": "yes" if self.current_context == name else "no"}

    def use_context(self, name: str) -> None:
        """Make `name` the current context (`local`: the embedded stack)."""
        if name == LOCAL_CONTEXT:
            self.data.pop("current_context", None)
            return
        self.server_for(name)
        self.data["current_context"] = name

    def save(self) -> None:
        """Write the file atomically, readable by its owner only (it may hold tokens)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            import tempfile

            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".config-", suffix=".toml")
            try:
                # mkstemp makes it 0600 already; say so, since it may hold API tokens.
                os.fchmod(fd, 0o600)
                with os.fdopen(fd, "w", encoding="utf-8") as file:
                    file.write(self._text())
                os.replace(tmp, self.path)
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError as error:
            raise InvalidConfig(f"cannot write {self.path}: {error}") from None


    def _text(self) -> str:
        """The file's new text: its old text with only what changed changed (comments,
        order and layout kept), or the whole config when there was no file."""
        import tomlkit

        try:
            document = tomlkit.parse(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return dumps(self.data)
        except (OSError, ValueError, tomlkit.exceptions.TOMLKitError):
            # Read once already (tomllib), so only a race gets here: write it afresh.
            return dumps(self.data)
        _update(document, self.data)
        return document.as_string()


def _update(document: MutableMapping[str, Any], data: Mapping[str, Any]) -> None:
    """Make the tomlkit `document` (or table) hold `data`, touching only what differs."""
    for key in [key for key in document if key not in data]:
        del document[key]
    for key, value in data.items():
        old = document.get(key)
        if isinstance(value, dict) and isinstance(old, MutableMapping):
            _update(old, value)
        elif key not in document or _plain(old) != value:
            document[key] = value


def _plain(item: Any) -> Any:
    """A tomlkit item as the plain value tomllib reads."""
    unwrap = getattr(item, "unwrap", None)
    return unwrap() if unwrap is not None else item


def dumps(data: Mapping[str, Any]) -> str:
    """TOML for nested tables of strings, numbers, booleans and arrays of those."""
    lines: list[str] = []
    _dump_table(data, [], lines)
    return "\n".join(lines).lstrip("\n") + "\n"


def _dump_table(table: Mapping[str, Any], path: list[str], lines: list[str]) -> None:
    scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in table.items() if isinstance(v, dict)}
    if path and (scalars or not tables):
        lines.append("")
        lines.append("[" + ".".join(_key(part) for part in path) + "]")
    for key, value in scalars.items():
        lines.append(f"{_key(key)} = {_value(value)}")
    for key, value in tables.items():
        _dump_table(value, [*path, key], lines)


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _string(key)


def _string(text: str) -> str:
    escaped = "".join(
        _TOML_ESCAPES.get(char)
        or (f"\\u{ord(char):04x}" if ord(char) < 0x20 or ord(char) == 0x7F else char)
        for char in text
    )
    return f'"{escaped}"'


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    raise InvalidConfig(f"cannot write a {type(value).__name__} value to the config file")
