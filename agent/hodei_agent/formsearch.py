"""Finding the forms of a job's secrets in its output with few scans of each read.

`bytes.find` is fast for a long needle, and each needle costs one scan of the read: with
forty-odd forms a secret, searching form by form would scan every read forty times. Most
forms of a value differ from it only where it has punctuation (`%2F`, `\\/`, `&amp;`), so
they keep its longest run of letters, digits and `-._`: one search for that run finds them all,
and each hit is checked against the forms that hold it. The base64 forms of an encoding
share their runs too (the standard and URL alphabets differ only in `+/` and `-_`). A form
with no such run is searched as it is.

The result is exactly what searching every form would find.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable

# A shorter run is a poor needle: it matches ordinary output more often, and `bytes.find`
# skips less the shorter its needle. A value's run is shared by some twenty-five forms, so
# a shorter one still saves searches; a form's own run replaces one or two.
# In a value: what no text encoder changes (letters, digits and URL-unreserved `-._`).
_VALUE_RUN = re.compile(rb"[A-Za-z0-9._-]{6,}")
# In a form of its own: letters and digits, which both base64 alphabets share.
_FORM_RUN = re.compile(rb"[A-Za-z0-9]{8,}")
# partial_start matches tails shorter than this by their bytes, longer ones by a search.
_PREFIX_BYTES = 8


def _runs(pattern: re.Pattern[bytes], text: bytes) -> list[bytes]:
    """The runs of `text` long enough to search for, longest first."""
    return sorted(set(pattern.findall(text)), key=len, reverse=True)


class FormIndex:
    """What to search for to find each form, and the forms' beginnings."""

    def __init__(self, forms_by_value: Iterable[tuple[bytes, Iterable[bytes]]]) -> None:
        targets: dict[bytes, dict[bytes, int]] = defaultdict(dict)
        for value, forms in forms_by_value:
            value_runs = _runs(_VALUE_RUN, value)
            for form in forms:
                anchor = next((run for run in value_runs if run in form), None)
                if anchor is None:
                    anchor = next(iter(_runs(_FORM_RUN, form)), form)
                targets[anchor][form] = form.index(anchor)
        # (needle, ((offset of the needle in the form, form), ...)), longest forms first
        self._searches = [
            (needle, sorted(((offset, form) for form, offset in held.items()),
                            key=lambda item: -len(item[1])))
            for needle, held in targets.items()
        ]
        forms = [form for held in targets.values() for form in held]
        self._short_prefixes = {form[:size] for form in forms
                                for size in range(1, min(_PREFIX_BYTES, len(form)))}
        long_prefixes: dict[bytes, list[bytes]] = defaultdict(list)
        for form in forms:
            if len(form) > _PREFIX_BYTES:
                long_prefixes[form[:_PREFIX_BYTES]].append(form)
        self._long_prefixes = [(prefix, max(map(len, held)), held)
                               for prefix, held in long_prefixes.items()]

    def occurrences(self, data: bytes, pos: int) -> list[tuple[int, bytes]]:
        """(start, form) of every occurrence of every form in `data` from `pos` on."""
        found: list[tuple[int, bytes]] = []
        for needle, held in self._searches:
            at = data.find(needle, pos)
            while at != -1:
                for offset, form in held:
                    start = at - offset
                    if start >= pos and data.startswith(form, start):
                        found.append((start, form))
                at = data.find(needle, at + 1)
        return found

    def partial_start(self, data: bytes, pos: int) -> int | None:
        """The first position >= pos whose rest of `data` is a proper prefix of a form."""
        best: int | None = None
        end = len(data)
        for prefix, longest, held in self._long_prefixes:
            at = data.find(prefix, max(pos, end - longest + 1))
            while at != -1 and (best is None or at < best):
                tail = data[at:]
                if any(len(form) > len(tail) and form.startswith(tail) for form in held):
                    best = at
                    break
                at = data.find(prefix, at + 1)
        if best is not None:
            return best
        for size in range(min(_PREFIX_BYTES - 1, end - pos), 0, -1):
            if data[end - size:] in self._short_prefixes:
                return end - size
        return None
