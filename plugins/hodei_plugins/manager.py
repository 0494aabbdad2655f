"""Finds, loads and guards the plugins of entry-point group `hodei`.

Built-in plugins register exactly like third-party ones. A plugin named in
`HODEI_DISABLED_PLUGINS` (comma-separated entry-point names) is not imported at all. A plugin
that fails to import, to register, or raises in a hook is reported in one log line, listed
as failed and left out; the process goes on.
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import pluggy

from hodei_plugins import spec
from hodei_plugins.info import DISABLED, FAILED, LOADED, PluginInfo

if TYPE_CHECKING:
    import typer

log = logging.getLogger(__name__)

GROUP = "hodei"
DISABLE_ENV = "HODEI_DISABLED_PLUGINS"

def disabled_names(value: str | None = None) -> set[str]:
    """The entry-point names listed in `HODEI_DISABLED_PLUGINS` (or in `value`)."""
    text = os.environ.get(DISABLE_ENV, "") if value is None else value
    return {part.strip() for part in text.split(",") if part.strip()}


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class PluginHost:
    """The plugin manager plus what each plugin registered, with failures isolated."""

    def __init__(self, manager: pluggy.PluginManager, plugins: list[PluginInfo]) -> None:
        self.manager = manager
        self.plugins = plugins
        self._cache: dict[str, dict[str, type]] = {}

    def info(self, name: str) -> PluginInfo | None:
        return next((p for p in self.plugins if p.name == name), None)

    def _fail(self, name: str, exc: BaseException, during: str) -> None:
        reason = f"{during}: {_reason(exc)}"
        log.warning("hodei plugin %r failed (%s); continuing without it", name, reason)
        info = self.info(name)
        if info is not None:
            info.status, info.reason = FAILED, reason
        plugin = self.manager.get_plugin(name)
        if plugin is not None:
            self.manager.unregister(plugin, name)

    def _call_each(self, hook_name: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Each plugin's answer to the hook; a plugin that raises is marked failed."""
        hook = getattr(self.manager.hook, hook_name)
        answers: list[tuple[str, Any]] = []
        # pluggy calls the last registered first; keep registration order instead.
        for impl in list(hook.get_hookimpls()):
            if self.manager.get_plugin(impl.plugin_name) is None:
                continue  # failed in an earlier hook
            try:
                answer = impl.function(**{k: kwargs[k] for k in impl.argnames})
            except Exception as exc:
                self._fail(impl.plugin_name, exc, hook_name)
                continue
            answers.append((impl.plugin_name, answer))
        return answers

    def _classes(
        self, hook_name: str, key: str, kind: str, check: Callable[[type], None]
    ) -> dict[str, type]:
        if hook_name in self._cache:
            return self._cache[hook_name]
        found: dict[str, type] = {}
        for plugin_name, answer in self._call_each(hook_name):
            try:
                classes = list(answer or [])
                for cls in classes:
                    if not isinstance(cls, type):
                        raise TypeError(f"{cls!r} is not a class")
                    if not isinstance(getattr(cls, key, None), str) or not getattr(cls, key):
                        raise TypeError(f"{cls.__name__} has no {key!r} class attribute")
                    check(cls)
            except Exception as exc:
                self._fail(plugin_name, exc, hook_name)
                continue
            for cls in classes:
                value = getattr(cls, key)
                if value in found:
                    log.warning("hodei plugin %r: %s %r already registered; ignoring %s",
                                plugin_name, key, value, cls.__qualname__)
                    continue
                found[value] = cls
                info = self.info(plugin_name)
                if info is not None:
                    info.provides.append(f"{kind}:{value}")
        self._cache[hook_name] = found
        return found

    def providers(self) -> dict[str, type]:
        """Provider classes by `type_name`."""

        def check(cls: type) -> None:
            config_class = getattr(cls, "config_class", None)
            if not isinstance(config_class, type):
                raise TypeError(f"{cls.__name__} has no 'config_class' class attribute")

        return self._classes("hodei_register_providers", "type_name", "provider", check)

    def strategies(self) -> dict[str, type]:
        """Scheduling strategy classes by `name`."""

        def check(cls: type) -> None:
            if not callable(getattr(cls, "choose", None)):
                raise TypeError(f"{cls.__name__} has no choose() method")

        return self._classes("hodei_register_strategies", "name", "strategy", check)

    def secret_backends(self) -> dict[str, type]:
        """Secret backend classes by `name` (built in: env, file)."""
        return self._classes("hodei_register_secret_backends", "name", "secrets",
                             lambda cls: None)

    def tui_screens(self) -> dict[str, type]:
        """Screens plugins add to `hodeictl tui`, by `screen_name`."""
        return self._classes("hodei_tui_screens", "screen_name", "tui-screen",
                             lambda cls: None)

    def provider_for_config(self, config: object) -> type | None:
        """The registered provider class whose `config_class` is `type(config)`."""
        for cls in self.providers().values():
            if type(config) is cls.config_class:  # type: ignore[attr-defined]
                return cls
        return None

    def add_cli_commands(self, app: typer.Typer) -> None:
        """Let every plugin add its hodeictl sub-commands."""
        self._call_each("hodei_add_cli_commands", app=app)


def _distribution(ep: importlib.metadata.EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "-", "-"
    return dist.metadata["Name"] or dist.name, dist.version


def load_plugins(
    entry_points: Iterable[importlib.metadata.EntryPoint] | None = None,
    disabled: set[str] | None = None,
) -> PluginHost:
    """A fresh host with the entry points of group `hodei` (or `entry_points`) loaded."""
    manager = pluggy.PluginManager(spec.PROJECT)
    manager.add_hookspecs(spec)
    if entry_points is None:
        entry_points = importlib.metadata.entry_points(group=GROUP)
    blocked = disabled_names() if disabled is None else disabled
    plugins: list[PluginInfo] = []
    seen: set[str] = set()
    for ep in sorted(entry_points, key=lambda e: e.name):
        dist_name, version = _distribution(ep)
        info = PluginInfo(ep.name, ep.value, dist_name, version, LOADED)
        if ep.name in seen:
            info.status, info.reason = FAILED, f"duplicate entry point name {ep.name!r}"
            log.warning("hodei plugin %r from %s ignored: another plugin has that name",
                        ep.name, dist_name)
            plugins.append(info)
            continue
        seen.add(ep.name)
        plugins.append(info)
        if ep.name in blocked:
            info.status = DISABLED
            info.reason = f"in {DISABLE_ENV}"
            manager.set_blocked(ep.name)
            continue
        try:
            plugin = ep.load()
            manager.register(plugin, name=ep.name)
        except Exception as exc:
            info.status, info.reason = FAILED, f"load: {_reason(exc)}"
            log.warning("hodei plugin %r failed to load (%s); continuing without it",
                        ep.name, info.reason)
    return PluginHost(manager, plugins)


@functools.cache
def get_host() -> PluginHost:
    """The process-wide host, loaded on first use."""
    return load_plugins()
