"""Tokens (admins): API tokens by name and role, never their secrets."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from rich.text import Text

from hodeictl.client import HodeiClient
from hodeictl.tui.cells import age, role_name, safe
from hodeictl.tui.screens.listing import ListingScreen


class TokensScreen(ListingScreen):
    screen_name = "tokens"
    COLUMNS: ClassVar[Sequence[str]] = ("NAME", "ROLE", "CREATED", "BY", "LAST USED",
                                        "EXPIRES", "REVOKED")

    async def fetch(self, client: HodeiClient) -> Sequence[Any]:
        return await client.list_tokens(include_revoked=True)

    def cells(self, item: Any) -> list[Text]:
        expires = (item.expires_at.ToDatetime().strftime("%Y-%m-%d %H:%M")
                   if item.HasField("expires_at") else "never")
        return [safe(item.name, 40), Text(role_name(item.role)), Text(age(item.created_at)),
                safe(item.created_by, 30), Text(age(item.last_used_at)), Text(expires),
                Text(age(item.revoked_at))]
