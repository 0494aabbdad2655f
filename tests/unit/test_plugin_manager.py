"""The plugin manager: entry points, disabling, failures isolated; config through it."""

from __future__ import annotations

import logging
import textwrap
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from hodei_plugins import hookimpl, spec
from hodei_plugins.manager import DISABLED, FAILED, LOADED, disabled_names, get_host, load_plugins
from hodei_server import config as server_config
from hodei_server.errors import ConfigError

GOOD = '''
from hodei_plugins import hookimpl

class Nearest:
    name = "nearest"
    def choose(self, job, candidates):
        return candidates[-1] if candidates else None

@hookimpl
def hodei_register_strategies():
    return [Nearest]

@hookimpl
def hodei_add_cli_commands(app):
    app.command("nearest-hello")(lambda: print("hi"))
'''
RAISES = '''
from hodei_plugins import hookimpl

@hookimpl
def hodei_register_strategies():
    raise RuntimeError("boom")
'''
NOT_A_CLASS = '''
from hodei_plugins import hookimpl

@hookimpl
def hodei_register_providers():
    return ["local"]
'''


@pytest.fixture
def modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, text in {"hp_good": GOOD, "hp_raises": RAISES, "hp_bad": NOT_A_CLASS,
                       "hp_broken": "import no_such_module_anywhere\n"}.items():
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def _eps(**names: str) -> list[EntryPoint]:
    return [EntryPoint(name, value, "hodei") for name, value in names.items()]


def test_spec_exports_only_the_impl_marker() -> None:
    import hodei_plugins

    assert hodei_plugins.__all__ == ["hookimpl"]
    assert hookimpl is spec.hookimpl
    assert not hasattr(spec, "hookspec")
    hooks = [n for n in dir(spec) if n.startswith("hodei_")]
    assert sorted(hooks) == ["hodei_add_cli_commands", "hodei_register_providers",
                             "hodei_register_secret_backends", "hodei_register_strategies",
                             "hodei_tui_screens"]
    assert all(getattr(spec, n).__doc__ for n in hooks)


def test_builtins_register_through_entry_points() -> None:
    host = get_host()
    by_name = {p.name: p for p in host.plugins}
    assert by_name["local"].status == LOADED
    assert by_name["local"].distribution == "hodei"
    assert by_name["strategies"].status == LOADED
    assert "local" in host.providers()
    assert {"first-available", "least-loaded", "round-robin", "most-capacity",
            "affinity"} <= set(host.strategies())


def test_failures_are_isolated_and_reported(
    modules: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        host = load_plugins(
            _eps(good="hp_good", raises="hp_raises", bad="hp_bad", broken="hp_broken",
                 off="hp_good"),
            disabled={"off"},
        )
        strategies = host.strategies()
        providers = host.providers()
    assert set(strategies) == {"nearest"}
    assert providers == {}
    status = {p.name: (p.status, p.reason) for p in host.plugins}
    assert status["good"] == (LOADED, "")
    assert status["off"][0] == DISABLED
    assert status["raises"] == (FAILED, "hodei_register_strategies: RuntimeError: boom")
    assert status["bad"][0] == FAILED and "not a class" in status["bad"][1]
    assert status["broken"][0] == FAILED
    assert "ModuleNotFoundError" in status["broken"][1]
    # One line per failure, naming the plugin.
    failures = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert len(failures) == 3 and all("\n" not in m for m in failures)
    assert next(p for p in host.plugins if p.name == "good").provides == ["strategy:nearest"]


def test_cli_hook_adds_commands(modules: Path) -> None:
    import typer

    app = typer.Typer()
    load_plugins(_eps(good="hp_good"), disabled=set()).add_cli_commands(app)
    assert [c.name for c in app.registered_commands] == ["nearest-hello"]


def test_disabled_names_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HODEI_DISABLED_PLUGINS", " example, other ,,")
    assert disabled_names() == {"example", "other"}


def _load(tmp_path: Path, text: str) -> server_config.ServerConfig:
    path = tmp_path / "server.toml"
    path.write_text(textwrap.dedent(text))
    return server_config.load(path)


def test_provider_type_resolved_through_registry(tmp_path: Path) -> None:
    config = _load(tmp_path, """
        strategy = "round-robin"
        [[providers]]
        type = "local"
        name = "l1"
        strategy = "most-capacity"
    """)
    assert config.strategy == "round-robin"
    assert type(config.providers[0]).__name__ == "LocalProviderConfig"
    assert config.providers[0].strategy == "most-capacity"
    provider = get_host().provider_for_config(config.providers[0])
    assert provider is not None and provider.__name__ == "LocalProvider"


def test_unknown_provider_type_lists_registered(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"providers\[0\].*registered providers: docker, local.*'dockr'"
    ):
        _load(tmp_path, '[[providers]]\ntype = "dockr"\n')


def test_unknown_provider_key_says_did_you_mean(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'max_worker'; did you mean 'max_workers'"):
        _load(tmp_path, '[[providers]]\ntype = "local"\nmax_worker = 3\n')


def test_unknown_strategy_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"unknown strategy 'round-robn'; did you mean 'round-robin'"
    ):
        _load(tmp_path, '[[providers]]\ntype = "local"\nstrategy = "round-robn"\n')
    with pytest.raises(ConfigError, match=r"registered: affinity, first-available"):
        _load(tmp_path, 'strategy = "fastest"\n')


def test_the_ssh_provider_is_configured_like_the_others(tmp_path: Path) -> None:
    config = _load(tmp_path, '[[providers]]\ntype = "ssh"\nname = "metal"\n'
                             'hosts = ["rack1-07"]\nconnect = "tunnel"\nmax_workers = 3\n')
    assert type(config.providers[0]).__name__ == "SshProviderConfig"
    provider = get_host().provider_for_config(config.providers[0])
    assert provider is not None and provider.__name__ == "SshProvider"
    with pytest.raises(ConfigError, match=r"providers\[0\]: connect must be"):
        _load(tmp_path, '[[providers]]\ntype = "ssh"\nconnect = "magic"\n')
    with pytest.raises(ConfigError, match=r"providers\[0\]: service must be"):
        _load(tmp_path, '[[providers]]\ntype = "ssh"\nservice = "init.d"\n')
