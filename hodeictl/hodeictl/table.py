"""Tables that keep what matters on a narrow terminal, and plain aligned text in a pipe.

Every column has a priority: 0 never drops (id, name, state); the others drop, highest
number first, when the terminal is too narrow. Before anything drops, the `shrink` columns
are cut with `…` down to their minimum, lowest `shrink` first: a command and labels (1)
before a name (2). Into a pipe or a file there is
no width limit: every column, nothing cut, no colour, no trailing blanks, so
`hodeictl job list | awk '{print $3}'` reads the state.

Cells are untrusted text (job names, commands, labels): each is made safe with
`terminal.sanitize(single_line=True)`, so no escape sequence reaches the terminal and no
cell breaks its line.
"""

from __future__ import annotations

import os
import sys
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from hodeictl.terminal import sanitize

GAP = "  "
ELLIPSIS = "…"
_SGR = {"green": "32", "red": "31", "yellow": "33", "cyan": "36", "bold": "1"}
STATE_COLOURS = {
    "SUCCEEDED": "green", "RUNNING": "cyan", "ASSIGNED": "cyan", "READY": "green",
    "BUSY": "cyan", "FAILED": "red", "TIMED_OUT": "red", "LOST": "red",
    "CANCELLED": "yellow", "DRAINING": "yellow", "BLOCKED": "yellow",
}


@dataclass(frozen=True)
class Column:
    """A column: its header, how it gives way on a narrow terminal, where it shows."""

    header: str
    priority: int = 0  # 0: never dropped; otherwise the highest drops first
    shrink: int = 0  # cut with an ellipsis (to min_width) before anything drops; 1 goes first
    min_width: int = 12
    wide: bool = False  # only with `-o wide`
    coloured: bool = False  # a state: coloured on a terminal
    right: bool = False  # numbers


def cell_width(text: str) -> int:
    """Columns `text` takes on a terminal (East Asian wide characters take two)."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else
               0 if unicodedata.combining(c) else 1 for c in text)


def _cut(text: str, width: int) -> str:
    if cell_width(text) <= width:
        return text
    out, used = [], 0
    for char in text:
        size = cell_width(char)
        if used + size > width - 1:
            break
        out.append(char)
        used += size
    return "".join(out) + ELLIPSIS


def terminal_width() -> int | None:
    """The terminal's width when stdout is one; None (no limit) into a pipe or file."""
    if not sys.stdout.isatty():
        return None
    import shutil  # 2 ms, and only a terminal needs it

    return shutil.get_terminal_size().columns


def use_colour() -> bool:
    """Colour tables only on a terminal, and never with NO_COLOR set (no-color.org)."""
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def fit(columns: Sequence[Column], rows: Sequence[Sequence[str]],
        width: int | None) -> tuple[list[int], list[int]]:
    """Which columns to show (indexes) and their widths, for a terminal `width` wide."""
    shown = list(range(len(columns)))
    natural = [max([cell_width(columns[i].header), *(cell_width(r[i]) for r in rows)])
               for i in range(len(columns))]
    widths = list(natural)
    if width is None:
        return shown, widths

    def total() -> int:
        return sum(widths[i] for i in shown) + len(GAP) * (len(shown) - 1)

    while total() > width:
        over = total() - width
        # First cut the shrinkable columns, lowest `shrink` first, the widest of those first.
        cuttable = [i for i in shown if columns[i].shrink and widths[i] > columns[i].min_width]
        if cuttable:
            order = min(columns[i].shrink for i in cuttable)
            widest = max((i for i in cuttable if columns[i].shrink == order),
                         key=lambda i: widths[i])
            widths[widest] = max(columns[widest].min_width, widths[widest] - over)
            continue
        # Then drop the least important column, and fit the rest again from their natural
        # widths (what it leaves goes back to the columns that were cut).
        droppable = [i for i in shown if columns[i].priority > 0]
        if droppable:
            shown.remove(max(droppable, key=lambda i: (columns[i].priority, i)))
            widths = list(natural)
            continue
        # What is left never drops: cut its shrinkable columns further, never an id or state.
        names = [i for i in shown if columns[i].shrink and widths[i] > 8]
        if not names:
            break
        widest = max(names, key=lambda i: widths[i])
        widths[widest] = max(8, widths[widest] - over)
    return shown, widths


def render(columns: Sequence[Column], rows: Sequence[Sequence[str]], *,
           width: int | None, headers: bool = True, colour: bool = False,
           wide: bool = False) -> list[str]:
    """The table's lines: columns aligned, fitted to `width` (None: no limit)."""
    columns, rows = _select(columns, rows, wide)
    rows = [[sanitize(cell, single_line=True) for cell in row] for row in rows]
    shown, widths = fit(columns, rows, width)
    lines = []
    if headers:
        lines.append(_line([columns[i].header for i in shown], [columns[i] for i in shown],
                           [widths[i] for i in shown], colour, header=True))
    for row in rows:
        lines.append(_line([row[i] for i in shown], [columns[i] for i in shown],
                           [widths[i] for i in shown], colour))
    return lines


def _select(columns: Sequence[Column], rows: Sequence[Sequence[str]],
            wide: bool) -> tuple[list[Column], list[list[str]]]:
    keep = [i for i, c in enumerate(columns) if wide or not c.wide]
    return [columns[i] for i in keep], [[row[i] for i in keep] for row in rows]


def _line(cells: list[str], columns: list[Column], widths: list[int], colour: bool,
          header: bool = False) -> str:
    parts = []
    last = len(cells) - 1
    for index, (cell, column, size) in enumerate(zip(cells, columns, widths, strict=True)):
        text = _cut(cell, size)
        pad = " " * (size - cell_width(text))
        shown = text
        if colour and header:
            shown = _paint(text, "bold")
        elif colour and column.coloured and text in STATE_COLOURS:
            shown = _paint(text, STATE_COLOURS[text])
        if column.right and not header:
            parts.append(pad + shown)
        else:
            parts.append(shown + ("" if index == last else pad))
    return GAP.join(parts).rstrip(" ")


def _paint(text: str, style: str) -> str:
    return f"\x1b[{_SGR[style]}m{text}\x1b[0m"


def print_table(columns: Sequence[Column], rows: Sequence[Sequence[str]], *,
                headers: bool = True, wide: bool = False) -> None:
    """Print a table to stdout, fitted to the terminal (or unlimited into a pipe)."""
    lines = render(columns, rows, width=terminal_width(), headers=headers,
                   colour=use_colour(), wide=wide)
    if lines:
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()
