"""The one duration grammar of hodeictl, for every option and every file field.

A duration is one or more parts, each a number and a unit: `d` (days), `h`, `m`, `s`,
such as `90s`, `5m`, `1h30m`, `2d` or `1d12h`. A bare number is seconds (`90`), and so is
a TOML number. Fractions are allowed (`1.5m`). Every refusal reads the same:

    '1x' is not a duration from 0 to 366 days, such as 90s, 5m, 1h30m or 2d
"""

from __future__ import annotations

import math
import re

from hodeictl.terminal import shown

EXAMPLES = "90s, 5m, 1h30m or 2d"
_NUMBER = r"\d+(?:\.\d+)?"
_DURATION = re.compile(rf"(?:{_NUMBER}[dhms])*{_NUMBER}[dhms]?")
_DURATION_PART = re.compile(rf"({_NUMBER})([dhms]?)")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse(value: str | float) -> float:
    """Seconds from `90`, `90s`, `1.5m`, `1h30m`, `2d` or a number; raises ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"{shown(value)} is not a duration such as {EXAMPLES}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = value.strip().lower() if isinstance(value, str) else ""
        if not _DURATION.fullmatch(text):
            raise ValueError(f"{shown(value)} is not a duration such as {EXAMPLES}")
        seconds = sum(
            float(number) * _UNIT_SECONDS[unit] for number, unit in _DURATION_PART.findall(text)
        )
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{shown(value)} is not a duration such as {EXAMPLES}")
    return seconds


def check(value: str | float, maximum: float) -> float:
    """Seconds from a duration of at most `maximum` seconds; raises ValueError (one line,
    the same wording for every option and field)."""
    try:
        seconds = parse(value)
    except ValueError:
        seconds = math.inf
    if seconds > maximum:
        raise ValueError(f"{shown(value)} is not a duration from 0 to {describe(maximum)}, "
                         f"such as {EXAMPLES}")
    return seconds


def describe(seconds: float) -> str:
    """`seconds` in the largest whole unit: `1 day`, `366 days`, `5m`, `90s`."""
    if seconds >= 86400 and seconds % 86400 == 0:
        days = seconds / 86400
        return f"{days:g} day" + ("" if days == 1 else "s")
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"
