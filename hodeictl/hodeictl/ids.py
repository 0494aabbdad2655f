"""Job and worker ids as people type them."""

from __future__ import annotations

from hodeictl.errors import InvalidJobId


def parse_job_id(value: str) -> str:
    """The canonical form of a job id (a UUID); raises InvalidJobId."""
    import uuid  # not at the top: it imports platform, which a start pays for

    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InvalidJobId(f"{value!r} is not a job id (expected a UUID)") from None
