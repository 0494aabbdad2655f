"""Server configuration: a TOML file, overridden by flags and environment."""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hodei_plugins.manager import get_host
from hodei_plugins.provider import ProviderConfig
from hodei_plugins.schedulers import DEFAULT_STRATEGY
from hodei_server.errors import ConfigError, InvalidSpec
from hodei_server.validation import validate_labels

# Worker names add "-" and 6 hex digits; container names add "hodei-".
_PROVIDER_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,38}[A-Za-z0-9])?")


@dataclass
class ServerConfig:
    listen: str = "127.0.0.1:50051"
    # Address agents started by providers dial; defaults to the bound listen address.
    advertise_address: str = ""
    database_url: str = ""
    heartbeat_interval: float = 5.0
    heartbeat_ttl: float = 20.0
    resync_interval: float = 1.0
    reconcile_interval: float = 1.0
    bootstrap_token_ttl: float = 600.0
    db_pool_size: int = 10
    # How many changes a live watcher (WatchJobs, WatchWorkers, WatchEvents) may have
    # waiting on this replica before it is reset or cut off.
    watch_buffer: int = 10000
    # Serve Prometheus metrics on http://HOST:PORT/metrics ("" = off).
    metrics_listen: str = ""
    # The scheduling strategy of jobs that name none (and whose provider names none).
    strategy: str = DEFAULT_STRATEGY
    providers: list[ProviderConfig] = field(default_factory=list)
    # Transport security (see hodei_server.security.tls). TLS is on when tls_cert is set.
    tls_cert: str = ""
    tls_key: str = ""
    # The CA that signed agents' client certificates; defaults to ca_cert.
    tls_client_ca: str = ""
    # The CA that signs agents' CSRs at registration and renewal.
    ca_key: str = ""
    ca_cert: str = ""
    # Lifetime of an agent certificate; agents renew it after two thirds of it.
    agent_cert_days: float = 7.0
    # Where agents' mutual-TLS streams are taken; "" = the listen host, next port.
    agent_listen: str = ""
    # Accept serving plaintext on an address other than loopback.
    insecure: bool = False
    # The key file of the built-in secret store (see hodei_server.security.secretkeys); "" = none
    # (then only $HODEI_SECRETS_KEY, if set).
    secret_key_file: str = ""
    # Secret backends besides the built-in `hodei` store, by name, with their options:
    # [secret_backends.vault] url = "...".
    secret_backends: dict[str, dict[str, Any]] = field(default_factory=dict)


def _check_strategy(name: str, where: str) -> None:
    known = get_host().strategies()
    if name not in known:
        close = difflib.get_close_matches(name, list(known), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"{where}: unknown strategy {name!r}{hint} (registered: {', '.join(sorted(known))})"
        )


def _check_keys(table: dict[str, Any], allowed: list[str], where: str) -> None:
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"{where}: unknown key {key!r}{hint}")


def _typed(cls: type[Any], table: dict[str, Any], where: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    _check_keys(table, list(fields), where)
    values: dict[str, Any] = {}
    for key, value in table.items():
        default = getattr(cls(), key)
        expected: tuple[type, ...]
        if isinstance(default, bool):
            expected = (bool,)
        elif isinstance(default, float):
            expected = (int, float)
        elif isinstance(default, int):
            expected = (int,)
        else:
            expected = (type(default),)
        if not isinstance(value, expected) or (isinstance(value, bool) and bool not in expected):
            raise ConfigError(f"{where}: {key!r} must be a {expected[0].__name__}")
        values[key] = float(value) if expected[0] is int and float in expected else value
    try:
        return cls(**values)
    except ValueError as exc:  # a config class's own check (__post_init__)
        raise ConfigError(f"{where}: {exc}") from None


def _provider(table: dict[str, Any], index: int) -> ProviderConfig:
    where = f"providers[{index}]"
    if not isinstance(table, dict):
        raise ConfigError("providers must be an array of tables ([[providers]])")
    kind = table.get("type")
    types = get_host().providers()
    if kind not in types:
        known = ", ".join(sorted(types)) or "(none registered)"
        raise ConfigError(f"{where}: type must be one of the registered providers: {known} "
                          f"(got {kind!r})")
    rest = {k: v for k, v in table.items() if k != "type"}
    config_class = types[kind].config_class  # type: ignore[attr-defined]
    config: ProviderConfig = _typed(config_class, rest, where)
    if not config.name:
        raise ConfigError(f"{where}: name must not be empty")
    # The name becomes worker names, container names and the `provider` label's value.
    if not _PROVIDER_NAME.fullmatch(config.name):
        raise ConfigError(f"{where}: name {config.name[:80]!r} must be at most 40 letters, "
                          "digits, '-', '_' or '.', starting and ending with a letter or digit")
    try:
        validate_labels(config.labels, "labels")
    except InvalidSpec as exc:
        raise ConfigError(f"{where}: {exc.message}") from None
    if config.strategy:
        _check_strategy(config.strategy, where)
    if config.min_workers < 0 or config.max_workers < config.min_workers:
        raise ConfigError(f"{where}: need 0 <= min_workers <= max_workers")
    if config.slots < 1:
        raise ConfigError(f"{where}: slots must be >= 1")
    if config.connect_timeout <= 0:
        raise ConfigError(f"{where}: connect_timeout must be > 0")
    return config


def load(path: Path | None) -> ServerConfig:
    """The configuration from `path` (if any) and HODEI_DATABASE_URL."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    providers = data.pop("providers", [])
    if not isinstance(providers, list):
        raise ConfigError("providers must be an array of tables ([[providers]])")
    secret_backends = data.pop("secret_backends", {})
    if not isinstance(secret_backends, dict) or not all(
        isinstance(v, dict) for v in secret_backends.values()
    ):
        raise ConfigError("secret_backends must hold one table per backend "
                          "([secret_backends.NAME])")
    config: ServerConfig = _typed(ServerConfig, data, str(path or "config"))
    config.secret_backends = secret_backends
    if config.secret_key_file and path is not None:
        # Relative to the config file, like any path a config names.
        config.secret_key_file = str(path.parent / Path(config.secret_key_file).expanduser())
    config.providers = [_provider(p, i) for i, p in enumerate(providers)]
    _check_strategy(config.strategy, str(path or "config"))
    names = [p.name for p in config.providers]
    if len(set(names)) != len(names):
        raise ConfigError("providers: each provider needs a distinct name")
    env_url = os.environ.get("HODEI_DATABASE_URL")
    if env_url:
        config.database_url = env_url
    return config
