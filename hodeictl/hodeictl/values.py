"""Checking the values people type: numbers in a range, durations, server addresses, names.

Each check returns the parsed value or raises ValueError with one line that quotes the
value and says what would be accepted. Options use them as typer parsers
(`typer.Option(parser=values.number(0, 4096))`), so a bad value is refused while the
command line is parsed, and `hodeictl.usage` names the option in the message.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

from hodeictl import durations
from hodeictl.terminal import shown

# The job limits the server enforces (docs/security.md, "Limits"), checked here first so
# that the message names the option.
MAX_CPUS = 4096.0
MAX_MEMORY_MB = 2**30
MAX_ATTEMPTS = 100
MAX_TIMEOUT_SECONDS = 366 * 86400.0
MAX_BACKOFF_SECONDS = 86400.0
MAX_GRACE_SECONDS = 86400.0
MAX_SINCE_SECONDS = 3660 * 86400.0  # ten years of 366 days
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1

_CONTEXT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,62}")
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_PORT = re.compile(r"[0-9]{1,5}")


def _as_text(value: str | float) -> str:
    return value if isinstance(value, str) else repr(value)


def number(low: float, high: float, *, above_low: bool = False) -> Callable[[str | float], float]:
    """A parser for a finite number from `low` (or above it) to `high`."""
    if above_low:
        expected = f"a number above {low:g} and at most {high:g}"
    else:
        expected = f"a number from {low:g} to {high:g}"

    def parse(value: str | float) -> float:
        try:
            result = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{shown(value)} is not {expected}") from None
        too_low = result <= low if above_low else result < low
        if not math.isfinite(result) or too_low or result > high:
            raise ValueError(f"{shown(_as_text(value))} is not {expected}")
        return result

    return parse


def integer(low: int, high: int) -> Callable[[str | int], int]:
    """A parser for a whole number from `low` to `high`."""
    expected = f"a whole number from {low} to {high}"

    def parse(value: str | int) -> int:
        try:
            result = value if isinstance(value, int) else int(value)
        except (TypeError, ValueError):
            raise ValueError(f"{shown(value)} is not {expected}") from None
        if not low <= result <= high:
            raise ValueError(f"{shown(_as_text(value))} is not {expected}")
        return result

    return parse


def duration(high: float) -> Callable[[str | float], float]:
    """A parser for a duration (`90s`, `5m`, `1h30m`, `2d`; hodeictl.durations) up to `high`
    seconds."""

    def parse(value: str | float) -> float:
        return durations.check(value, high)

    return parse


def context_name(value: str) -> str:
    """`value` if it can name a context; raises ValueError."""
    if not _CONTEXT_NAME.fullmatch(value):
        raise ValueError(
            f"{shown(value)} is not a context name: 1-63 letters, digits, '.', '_', '-' or '@', "
            "starting with a letter or digit"
        )
    return value


def server_address(value: str) -> str:
    """`value` if it is HOST:PORT (a DNS name, an IPv4 address or [IPv6]); raises ValueError."""
    if not _is_address(value):
        raise ValueError(
            f"{shown(value)} is not a server address: HOST:PORT, where HOST is a DNS name, "
            "an IPv4 address or an [IPv6] address, and PORT 1-65535"
        )
    return value


def host(value: str) -> str:
    """`value` if it is a DNS name, an IPv4 or an IPv6 address; raises ValueError."""
    if not (_is_ip(6, value) or _is_host(value)):
        raise ValueError(f"{shown(value)} is not a DNS name or an IP address")
    return value


def _is_address(value: str) -> bool:
    name, sep, port = value.rpartition(":")
    if not sep or not _PORT.fullmatch(port) or not 1 <= int(port) <= 65535:
        return False
    if name.startswith("[") and name.endswith("]"):
        return _is_ip(6, name[1:-1])
    return _is_host(name)


def _is_host(name: str) -> bool:
    """A DNS name or an IPv4 address."""
    if _is_ip(4, name):
        return True
    labels = name.removesuffix(".").split(".")
    return len(name) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in labels) \
        and not labels[-1].isdigit()


def _is_ip(version: int, text: str) -> bool:
    """Whether `text` is an IPv4 (`version` 4) or IPv6 (6) address."""
    import socket  # not at the top: `hodeictl --help` never checks an address

    try:
        socket.inet_pton(socket.AF_INET6 if version == 6 else socket.AF_INET, text)
    except (OSError, ValueError):
        return False
    return True


CONDITION_NAMES = ("succeeded", "finished", "failed")


def after(value: str) -> str:
    """`ID[:succeeded|:finished|:failed]` checked and made canonical; raises ValueError."""
    import uuid

    job_id, sep, condition = value.partition(":")
    try:
        canonical = str(uuid.UUID(job_id))
    except ValueError:
        raise ValueError(f"{shown(value)} is not JOB_ID[:succeeded|:finished|:failed] "
                         "(a job id is a UUID)") from None
    if sep and condition not in CONDITION_NAMES:
        raise ValueError(f"{shown(value)}: the condition must be succeeded, finished "
                         "or failed")
    return f"{canonical}:{condition or 'succeeded'}"
