"""A plugin adds a screen through the `hodei_tui_screens` hook; `:NAME` shows it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Static

from hodei_plugins import hookimpl
from hodei_plugins.manager import get_host
from tests.tui.fixed import FixedApp
from tests.tui.harness import shown, wait_for


class Queues(Screen[None]):
    screen_name = "queues"

    def compose(self) -> ComposeResult:
        yield Static("queues from a plugin", id="queues")


class Replacement(Screen[None]):
    screen_name = "jobs"  # a built-in's name: ignored


class QueuesPlugin:
    @hookimpl
    def hodei_tui_screens(self) -> list[type]:
        return [Queues, Replacement]


@pytest.fixture
def plugin() -> Iterator[None]:
    host = get_host()
    host.manager.register(QueuesPlugin(), "tui-queues")
    host._cache.pop("hodei_tui_screens", None)
    try:
        yield
    finally:
        host.manager.unregister(name="tui-queues")
        host._cache.pop("hodei_tui_screens", None)


def test_a_plugin_screen_is_a_command(plugin: None) -> None:
    async def scenario() -> None:
        app = FixedApp()
        async with app.run_test(size=(120, 30)) as pilot:
            assert "queues" in app.screen_names()
            await pilot.press("colon", *"queues", "enter")
            await wait_for(pilot, lambda: app.current_mode == "queues")
            assert "queues from a plugin" in shown(app.screen.query_one("#queues"))
            await pilot.press("colon", *"jobs", "enter")
            await wait_for(pilot, lambda: type(app.screen).__name__ == "JobsScreen")

    asyncio.run(scenario())
