"""A lost connection shows a banner, and the console reconnects with backoff."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from tests.e2e.harness import ServerProcess
from tests.faults.proxy import CuttableProxy
from tests.tui.harness import SIZE, make_app, run, shown, wait_for

pytestmark = pytest.mark.e2e


class RefusingProxy(CuttableProxy):
    """A relay that, while `refusing`, drops every connection it has and takes no new one:
    the server looks down to the client, then comes back."""

    refusing = False

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.close()
            return
        await super()._accept(reader, writer)


def test_a_lost_connection_shows_a_banner_and_reconnects(tui_server: ServerProcess,
                                                          tmp_path: Path) -> None:
    host, port = tui_server.address.rsplit(":", 1)
    proxy = RefusingProxy(host, int(port)).start()
    relayed = ServerProcess(tmp_path, tui_server.database_url)
    relayed.address, relayed.token = f"127.0.0.1:{proxy.port}", tui_server.token

    async def scenario() -> None:
        app = make_app(relayed, tmp_path)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.fleet and app.role == 4, what="connected")
            assert not app.screen.query_one("#banner").display
            proxy.refusing = True
            proxy.reset()
            await wait_for(pilot, lambda: "reconnecting in" in app.problem, what="the banner")
            banner = app.screen.query_one("#banner")
            assert banner.display and "cannot reach the Hodei server" in shown(banner)
            await pilot.pause(1.5)
            assert re.search(r"\(try [2-9]\)", app.problem)  # it keeps trying, backing off
            proxy.refusing = False
            await wait_for(pilot, lambda: not app.problem, within=30, what="reconnected")
            assert not banner.display

    try:
        run(scenario())
    finally:
        proxy.stop()
