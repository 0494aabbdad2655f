"""The server's transport rules: plaintext only on loopback (or when told `insecure`),
what TLS needs, and that agents dial an address the server certificate names."""

from __future__ import annotations

from pathlib import Path

import pytest

from hodei_server.cli import certs as certcli
from hodei_server.config import ServerConfig
from hodei_server.errors import ConfigError
from hodei_server.security import tls


@pytest.fixture
def certs(tmp_path: Path) -> Path:
    certcli.init(tmp_path, ["hodei.example.com"], 1, force=False)
    return tmp_path


def tls_config(certs: Path, **overrides: object) -> ServerConfig:
    values: dict[str, object] = {
        "listen": "0.0.0.0:50051", "tls_cert": str(certs / "server.crt"),
        "tls_key": str(certs / "server.key"), "ca_cert": str(certs / "ca.crt"),
        "ca_key": str(certs / "ca.key"),
    }
    values.update(overrides)
    return ServerConfig(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize("listen", ["127.0.0.1:0", "localhost:50051", "[::1]:50051",
                                    "127.0.0.2:1"])
def test_plaintext_on_loopback_is_fine(listen: str) -> None:
    assert tls.load(ServerConfig(listen=listen)) is None


@pytest.mark.parametrize("listen", ["0.0.0.0:50051", ":50051", "[::]:1", "10.1.2.3:1",
                                    "hodei.example.com:1"])
def test_plaintext_elsewhere_needs_insecure(listen: str) -> None:
    with pytest.raises(ConfigError, match="insecure = true"):
        tls.load(ServerConfig(listen=listen))
    assert tls.load(ServerConfig(listen=listen, insecure=True)) is None


def test_tls_settings_load_and_name_the_mutual_tls_port(certs: Path) -> None:
    loaded = tls.load(tls_config(certs, agent_cert_days=0.5))
    assert loaded is not None and loaded.can_sign
    assert loaded.agent_cert_lifetime.total_seconds() == 43200
    assert tls.agent_listen(tls_config(certs)) == "0.0.0.0:50052"
    assert tls.agent_listen(tls_config(certs, listen="127.0.0.1:0")) == "127.0.0.1:0"
    assert tls.agent_listen(tls_config(certs, agent_listen="10.0.0.1:7000")) == "10.0.0.1:7000"
    tls.check_advertised(loaded, "hodei.example.com:50051")
    tls.check_advertised(loaded, "127.0.0.1:50051")
    with pytest.raises(ConfigError, match="advertise_address"):
        tls.check_advertised(loaded, "10.9.9.9:50051")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"tls_key": ""}, "tls_cert and tls_key go together"),
        ({"ca_cert": "", "ca_key": ""}, "tls_client_ca"),
        ({"ca_key": ""}, "ca_key and ca_cert go together"),
        ({"agent_cert_days": 0.0}, "agent_cert_days"),
        ({"tls_cert": "/nonexistent.crt"}, "cannot read"),
    ],
)
def test_incomplete_tls_settings_say_what_is_missing(
    certs: Path, overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        tls.load(tls_config(certs, **overrides))


def test_a_key_readable_by_others_is_refused(certs: Path) -> None:
    (certs / "server.key").chmod(0o640)
    with pytest.raises(ConfigError, match="chmod 600"):
        tls.load(tls_config(certs))
