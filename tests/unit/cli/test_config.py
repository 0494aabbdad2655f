"""The config file and `hodeictl context ...`."""

from __future__ import annotations

import json
import os
import stat
import tomllib
from pathlib import Path

import pytest
from hodeictl_fakes import invoke

from hodeictl import config, errors, target

AWKWARD = 'quote " backslash \\ tab \t newline \n nul \x00 del \x7f é 😀'


def config_file() -> Path:
    return Path(os.environ["HODEI_CONFIG"])


def test_dumps_round_trips_through_tomllib() -> None:
    data = {
        "current_context": AWKWARD,
        "flag": True,
        "count": -3,
        "ratio": 0.1,
        "list": ["a", AWKWARD, 1],
        "contexts": {
            "plain-name_1": {"server": "h:1"},
            "with space": {"server": AWKWARD},
            "dotted.name": {"server": "h:2"},
            'quo"te': {"server": "h:3", "nested": {"deeper": {"x": 1}}},
        },
        "empty": {},
    }
    assert tomllib.loads(config.dumps(data)) == data


def test_dumps_refuses_what_it_cannot_write() -> None:
    with pytest.raises(errors.InvalidConfig):
        config.dumps({"x": [{"a": 1}]})


def test_context_set_use_list_round_trip() -> None:
    assert invoke("context", "set", "prod", "--server", "hodei.example.com:50051").exit_code == 0
    assert invoke("context", "set", "web@eu-1.b", "--server", "[::1]:50051").exit_code == 0
    used = invoke("context", "use", "prod")
    assert used.exit_code == 0
    assert used.stderr == "Using context 'prod'.\n"

    listed = json.loads(invoke("context", "list", "-o", "json").stdout)
    assert listed == [
        {"name": "local", "server": listed[0]["server"], "current": False},
        {"name": "prod", "server": "hodei.example.com:50051", "current": True},
        {"name": "web@eu-1.b", "server": "[::1]:50051", "current": False},
    ]
    loaded = config.Config.load()
    assert loaded.current_context == "prod"
    assert loaded.contexts == {"prod": "hodei.example.com:50051", "web@eu-1.b": "[::1]:50051"}
    # The file may hold a database password: only its owner reads it.
    assert stat.S_IMODE(config_file().stat().st_mode) == 0o600

    table = invoke("context", "list")
    assert "prod" in table.stdout and "*" in table.stdout


def test_context_set_updates_and_keeps_unknown_keys() -> None:
    config_file().parent.mkdir(parents=True)
    config_file().write_text(
        'current_context = "a"\nfuture = 1\n[contexts.a]\nserver = "old:1"\ncolour = "red"\n'
        '[embedded]\ndatabase_url = "postgresql://u@h/db"\n'
    )
    assert invoke("context", "set", "a", "--server", "new:2").exit_code == 0
    assert tomllib.loads(config_file().read_text()) == {
        "current_context": "a",
        "future": 1,
        "contexts": {"a": {"server": "new:2", "colour": "red"}},
        "embedded": {"database_url": "postgresql://u@h/db"},
    }
    assert config.Config.load().embedded_database_url == "postgresql://u@h/db"


def test_context_use_local_goes_back_to_the_embedded_stack() -> None:
    invoke("context", "set", "prod", "--server", "h:1")
    invoke("context", "use", "prod")
    assert invoke("context", "use", "local").exit_code == 0
    assert config.Config.load().current_context is None
    assert invoke("context", "set", "local", "--server", "h:1").exit_code == 2


def test_context_use_of_an_unknown_context() -> None:
    invoke("context", "set", "prod", "--server", "h:1")
    result = invoke("context", "use", "prdo")
    assert result.exit_code == 1
    assert result.stderr.startswith("hodeictl: context 'prdo' not found in ")
    assert result.stderr.endswith("(known: local, prod)\n")


def test_a_broken_config_file_is_one_line_and_exit_78() -> None:
    config_file().parent.mkdir(parents=True)
    config_file().write_text("[contexts.prod]\nserver = 5\n")
    result = invoke("context", "list")
    assert result.exit_code == 78
    assert result.stderr == f"hodeictl: {config_file()}: context 'prod' needs a 'server' string\n"


def test_config_path_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("HODEI_CONFIG")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert config.config_path() == tmp_path / "xdg" / "hodei" / "config.toml"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert config.config_path() == tmp_path / ".config" / "hodei" / "config.toml"


def test_server_resolution_order() -> None:
    invoke("context", "set", "prod", "--server", "prod:1")
    invoke("context", "set", "staging", "--server", "staging:1")
    invoke("context", "use", "prod")
    assert target.Settings(server="flag:1", context="staging").address() == "flag:1"
    assert target.Settings(context="staging").address() == "staging:1"
    assert target.Settings().address() == "prod:1"


@pytest.mark.parametrize(
    ("env", "address"),
    [({"HODEI_SERVER": "127.0.0.1:1"}, "127.0.0.1:1"), ({"HODEI_CONTEXT": "down"}, "127.0.0.1:2")],
)
def test_global_options_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], address: str
) -> None:
    invoke("context", "set", "down", "--server", "127.0.0.1:2")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = invoke("job", "list")
    assert result.exit_code == 69
    assert result.stderr.startswith(f"hodeictl: cannot reach the Hodei server at {address}: ")


def test_context_with_a_ca_certificate_speaks_tls(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    assert invoke("context", "set", "prod", "--server", "h:1", "--ca-cert", str(ca)).exit_code == 0
    loaded = config.Config.load()
    assert loaded.ca_cert_for("prod") == str(ca.resolve())
    settings = target.Settings(context="prod")
    assert settings.address() == "h:1" and settings.ca_cert_pem() == ca.read_bytes()
    # Updating the server keeps the CA; a context without one stays plaintext.
    assert invoke("context", "set", "prod", "--server", "h:2").exit_code == 0
    assert config.Config.load().ca_cert_for("prod") == str(ca.resolve())
    assert invoke("context", "set", "dev", "--server", "d:1").exit_code == 0
    assert target.Settings(context="dev").ca_cert_pem() is None
    missing = invoke("context", "set", "x", "--server", "h:1", "--ca-cert", str(tmp_path / "no"))
    assert missing.exit_code != 0 and "--ca-cert" in missing.stderr


COMMENTED = """\
# My Hodei contexts; keep this header.
current_context = "prod"   # the one I use most

[contexts.prod]
# The production cluster, behind the VPN.
server = "hodei.example.com:50051"
token_file = "~/.config/hodei/prod.token"

[contexts.old]
server = "old.example.com:50051"   # retired next month

[embedded]
  # Indented on purpose.
  database_url = "postgresql://me@db/hodei"
"""


def test_commands_that_write_the_config_keep_its_comments_and_layout() -> None:
    path = config_file()
    path.parent.mkdir(parents=True)
    path.write_text(COMMENTED, encoding="utf-8")
    assert invoke("context", "set", "staging", "--server", "staging.example.com:50051"
                  ).exit_code == 0
    assert invoke("context", "use", "staging").exit_code == 0
    assert invoke("context", "set", "prod", "--server", "hodei2.example.com:50051"
                  ).exit_code == 0
    assert invoke("context", "delete", "old").exit_code == 0
    text = path.read_text(encoding="utf-8")
    for line in ["# My Hodei contexts; keep this header.",
                 'current_context = "staging"   # the one I use most',
                 "# The production cluster, behind the VPN.",
                 'server = "hodei2.example.com:50051"',
                 'token_file = "~/.config/hodei/prod.token"',
                 "  # Indented on purpose.",
                 '  database_url = "postgresql://me@db/hodei"']:
        assert line in text.splitlines(), (line, text)
    assert "old.example.com" not in text and "retired next month" not in text
    assert tomllib.loads(text) == {
        "current_context": "staging",
        "contexts": {"prod": {"server": "hodei2.example.com:50051",
                              "token_file": "~/.config/hodei/prod.token"},
                     "staging": {"server": "staging.example.com:50051"}},
        "embedded": {"database_url": "postgresql://me@db/hodei"},
    }
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_awkward_values_written_into_a_commented_file_read_back_the_same() -> None:
    path = config_file()
    path.parent.mkdir(parents=True)
    path.write_text("# mine\n", encoding="utf-8")
    cfg = config.Config.load()
    cfg.data["note"] = AWKWARD
    cfg.save()
    assert path.read_text(encoding="utf-8").startswith("# mine\n")
    assert config.Config.load().data == {"note": AWKWARD}
