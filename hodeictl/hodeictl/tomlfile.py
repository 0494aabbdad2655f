"""Reading a TOML file people wrote (a job file, the config file) into one-line errors.

Whatever the file holds (any size, any nesting, NUL bytes, text that is not UTF-8), the
result is a table or a `TomlFileError` whose message is one line naming the file and,
where there is one, the line and column.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

# Far above any real job or config file, and far below what would take long to parse.
MAX_BYTES = 16 * 1024 * 1024
# Arrays, tables and dotted keys nested deeper than this are refused: no real file needs
# it; tomllib parses nesting recursively (about 490 levels exhaust Python's stack), and
# takes time growing with the square of a dotted key's length (100,000 parts: minutes).
MAX_DEPTH = 32

# What `_too_deep_to_parse` looks at: strings and comments (skipped whole, so that brackets
# and dots inside them do not count), brackets, dots, and what ends a key or a value.
_LEXEME = re.compile(
    # Possessive quantifiers: an unterminated string must not make the search backtrack.
    r'"""(?:[^"\\]++|\\.|"(?!""))*+"{3,5}'  # multi-line basic string
    r"|'''(?:[^']++|'(?!''))*+'{3,5}"  # multi-line literal string
    r'|"(?:[^"\\\n]++|\\.)*+"'  # basic string
    r"|'[^'\n]*+'"  # literal string
    r"|#[^\n]*+"  # comment
    r"|[][{}.=,\n\"']",  # a quote left here opens a string that does not end
    re.DOTALL,
)
_QUOTES = ("'", '"')
_ERROR_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")
_AT_END = "(at end of document)"


class TomlFileError(ValueError):
    """The file cannot be read as TOML; the message is one line naming it."""


def load(path: Path, what: str) -> dict[str, Any]:
    """The table in the TOML file `path` (a `what`, such as "job file").

    Raises FileNotFoundError if there is no such file, TomlFileError for anything else.
    """
    return loads(read(path, what), path)


def read(path: Path, what: str) -> str:
    """The text of `path`, at most MAX_BYTES of UTF-8; raises FileNotFoundError or
    TomlFileError."""
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as error:  # ValueError: a NUL in the path
        reason = getattr(error, "strerror", None) or str(error)
        raise TomlFileError(f"{path}: cannot read {what}: {reason}") from None
    if len(data) > MAX_BYTES:
        raise TomlFileError(f"{path}: {what} larger than {MAX_BYTES // 2**20} MiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line, column = _position(data, error.start)
        raise TomlFileError(
            f"{path}:{line}:{column}: {what} is not UTF-8 text "
            f"(byte 0x{data[error.start]:02x})"
        ) from None


def loads(text: str, path: Path) -> dict[str, Any]:
    """The table TOML `text` (read from `path`) holds; raises TomlFileError."""
    import tomllib  # not at the top: `hodeictl --help` reads no TOML

    if _too_deep_to_parse(text):
        raise TomlFileError(_too_deep(path))
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise TomlFileError(_syntax_error(path, str(error), text)) from None
    except RecursionError:
        raise TomlFileError(_too_deep(path)) from None
    except ValueError as error:  # an integer of more digits than Python converts
        raise TomlFileError(f"{path}: invalid TOML: {error}") from None
    if _depth(data) > MAX_DEPTH:
        raise TomlFileError(_too_deep(path))
    return data


def _too_deep(path: Path) -> str:
    return f"{path}: invalid TOML: arrays or tables nested more than {MAX_DEPTH} levels deep"


def _too_deep_to_parse(text: str) -> bool:
    """Whether brackets nest, or a dotted key has parts, beyond MAX_DEPTH (before parsing).

    Outside strings and comments a dot separates the parts of a key; a value (a float, a
    time) holds one at most. So more than MAX_DEPTH dots between two of `[]{}=,` or a line
    end make a key too long to parse.
    """
    depth = dots = 0
    for match in _LEXEME.finditer(text):
        lexeme = match.group()
        if lexeme in _QUOTES:
            return False  # tomllib stops there too, saying where the string starts
        if lexeme == ".":
            dots += 1
            if dots > MAX_DEPTH:
                return True
        elif len(lexeme) == 1:
            dots = 0
            if lexeme in "[{":
                depth += 1
                if depth > MAX_DEPTH:
                    return True
            elif lexeme in "]}":
                depth -= 1
    return False


def _depth(data: dict[str, Any]) -> int:
    """How deep arrays and tables nest in `data` (walked without recursion)."""
    deepest = 0
    pending: list[tuple[object, int]] = [(data, 0)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict):
            items: list[object] = list(value.values())
        elif isinstance(value, list):
            items = value
        else:
            continue
        deepest = max(deepest, depth + 1)
        if deepest > MAX_DEPTH:
            return deepest
        pending.extend((item, depth + 1) for item in items)
    return deepest


def _position(data: bytes, offset: int) -> tuple[int, int]:
    start = data.rfind(b"\n", 0, offset) + 1
    return data.count(b"\n", 0, offset) + 1, offset - start + 1


def _syntax_error(path: Path, message: str, text: str) -> str:
    if match := _ERROR_POSITION.search(message):
        line, column = match.groups()
        message = message[: match.start()]
    elif message.endswith(_AT_END):
        lines = text.split("\n")
        line, column = str(len(lines)), str(len(lines[-1]) + 1)
        message = message.removesuffix(_AT_END).rstrip()
    else:
        return f"{path}: invalid TOML: {message}"
    return f"{path}:{line}:{column}: invalid TOML: {message}"
