"""The hook specifications of Hodei: what a plugin can contribute.

A plugin is a module (or an object) with functions decorated with `hodei_plugins.hookimpl`,
named after the hooks below, registered under the `hodei` entry-point group. pluggy is
synchronous: hooks hand over *classes*; the async work lives on those classes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import typer

PROJECT = "hodei"

_hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

# Every hook below collects the answers of all plugins (none is `firstresult`): several
# plugins may each add providers, strategies, secret backends or commands.


@_hookspec
def hodei_register_providers() -> list[type]:  # type: ignore[empty-body]
    """Provider classes this plugin adds.

    Each class has a `type_name` class attribute (the `type` of a `[[providers]]` table), a
    `config_class` dataclass (subclass of `hodei_plugins.provider.ProviderConfig`,
    constructible without arguments) and takes an instance of it in `__init__`; it is an
    async context manager with `async create_worker(...) -> str` (an opaque infrastructure
    id), `async destroy_worker(infra_id)` and `forget_exited() -> list[str]`.
    """


@_hookspec
def hodei_register_strategies() -> list[type]:  # type: ignore[empty-body]
    """Scheduling strategy classes this plugin adds.

    Each class has a `name` class attribute, is constructible without arguments, and has
    `choose(job, candidates) -> candidate | None` (see `hodei_plugins.schedulers.Strategy`).
    Candidates are only the workers that fit the job right now, so a strategy cannot
    over-commit a worker.
    """


@_hookspec
def hodei_register_secret_backends() -> list[type]:  # type: ignore[empty-body]
    """Secret backend classes this plugin adds (each with a `name` class attribute).

    Each has `async resolve(secret) -> bytes` raising `hodei_plugins.secrets.SecretNotFound`
    (or `SecretError`), and may have `async exists(secret) -> bool`. The server constructs
    the backends its config enables (`[secret_backends.NAME]`, options as keyword
    arguments). Built in: `hodei` (the encrypted store, always enabled), `env`, `file`
    (`hodei_plugins.secrets`) and `vault` (`hodei[vault]`). A job names `NAME` (the `hodei`
    store) or `BACKEND:NAME`; values are resolved only when an attempt is dispatched.
    """


@_hookspec
def hodei_add_cli_commands(app: typer.Typer) -> None:
    """Add sub-commands (or sub-apps) to `hodeictl`'s root typer application.

    Called once when hodeictl starts. Must not import `hodei_server`.
    """


@_hookspec
def hodei_tui_screens() -> list[type]:  # type: ignore[empty-body]
    """Screens this plugin adds to `hodeictl tui`.

    Each is a `textual.screen.Screen` subclass with a `screen_name` class attribute: the
    `:` command that shows it (a built-in screen's name is never replaced). It is
    constructed without arguments; `self.app` is the console, whose `connection.open()`
    gives the API client. Called only when the TUI starts; must not import `hodei_server`.
    """
