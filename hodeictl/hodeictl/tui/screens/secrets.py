"""Secrets: names and metadata only; values never leave the server."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from rich.text import Text

from hodeictl.client import HodeiClient
from hodeictl.tui.cells import age, safe
from hodeictl.tui.screens.listing import ListingScreen


class SecretsScreen(ListingScreen):
    screen_name = "secrets"
    COLUMNS: ClassVar[Sequence[str]] = ("NAME", "BACKEND", "SIZE", "UPDATED", "BY")

    async def fetch(self, client: HodeiClient) -> Sequence[Any]:
        return await client.list_secrets()

    def cells(self, item: Any) -> list[Text]:
        return [safe(item.name, 60), safe(item.backend, 12), Text(str(item.size_bytes)),
                Text(age(item.updated_at)), safe(item.updated_by, 30)]
