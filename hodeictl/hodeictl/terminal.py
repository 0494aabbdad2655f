"""Making untrusted text safe to show on a terminal.

A job's output and every string a server sends (job names, reasons, labels, worker names)
are untrusted: written raw to a terminal, escape sequences in them could move the cursor,
clear the screen, set the window title, plant hyperlinks, rewrite earlier lines or, on some
terminals, answer back into the shell's input. The rule, for text bound for a terminal:

- `\\n` and `\\t` pass; `\\r` passes only as part of `\\r\\n` (a lone one could overwrite the
  line it ends);
- every other C0 control and DEL is shown in caret notation, like `cat -v`: ESC as `^[`,
  BEL as `^G`, a lone CR as `^M`, DEL as `^?`. So `\\x1b[2J` prints as `^[[2J`, harmless;
- C1 controls (U+0080-U+009F, which some terminals read as ESC + a letter) and the bidi
  embedding, override and isolate characters (U+202A-U+202E, U+2066-U+2069, which can make
  text read differently from what it is) are shown as `<U+009B>`;
- bytes that are not UTF-8 are shown as `\\xNN`.

Colours (SGR sequences) are neutralised too, unless a person asks for them for a job's
output (`--color auto|always`): then an SGR sequence whose every parameter is a colour,
bold, dim, italic, underline or reset passes, and everything else, including SGR's
conceal, blink and anything unknown, stays shown as above. Where the output is not a
terminal (a pipe, a file), hodeictl writes job output byte for byte, untouched; these
functions are for terminals (and the TUI).
"""

from __future__ import annotations

import codecs
import re

_BIDI = "\u202a-\u202e\u2066-\u2069"
# Everything the rule above changes; \r is handled by position (only "\r\n" survives).
_UNSAFE = re.compile(f"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\x80-\x9f{_BIDI}]|\r(?!\n)")
_UNSAFE_LINE = re.compile(f"[\x00-\x1f\x7f\x80-\x9f{_BIDI}]")


# Select Graphic Rendition: ESC [ params m.
_SGR = re.compile(r"\x1b\[([0-9;]{0,64})m")
# A possible start of one at the end of a piece, held back until the next.
_SGR_START = re.compile(r"\x1b(\[[0-9;]{0,64})?$")
_SGR_PLAIN = frozenset({0, 1, 2, 3, 4, 21, 22, 23, 24, 39, 49, *range(30, 38), *range(40, 48),
                        *range(90, 98), *range(100, 108)})


def _sgr_allowed(params: str) -> bool:
    """Colours and plain emphasis only: no conceal (8), blink (5, 6), or unknown codes."""
    if not params:
        return True
    try:
        codes = [int(p) if p else 0 for p in params.split(";")]
    except ValueError:
        return False
    index = 0
    while index < len(codes):
        code = codes[index]
        if code in (38, 48):  # 38;5;N or 38;2;R;G;B
            rest = codes[index + 1:]
            if rest[:1] == [5] and len(rest) >= 2 and rest[1] <= 255:
                index += 3
                continue
            if rest[:1] == [2] and len(rest) >= 4 and all(c <= 255 for c in rest[1:4]):
                index += 5
                continue
            return False
        if code not in _SGR_PLAIN:
            return False
        index += 1
    return True


def sanitize_keeping_colours(text: str) -> str:
    """`sanitize(text)`, except that SGR colour sequences pass (see the module doc)."""
    out = []
    last = 0
    for match in _SGR.finditer(text):
        if not _sgr_allowed(match.group(1)):
            continue
        out.append(sanitize(text[last:match.start()]))
        out.append(match.group())
        last = match.end()
    out.append(sanitize(text[last:]))
    return "".join(out)


def _visible(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if code < 0x20:
        return "^" + chr(code + 0x40)
    if code == 0x7F:
        return "^?"
    return f"<U+{code:04X}>"


def sanitize(text: str, *, single_line: bool = False) -> str:
    """`text` with every control and escape sequence made visible (see the module doc).

    `single_line` also shows `\\n`, `\\r` and `\\t` (as `^J`, `^M`, `^I`), for a value that
    must stay on its line, such as a table cell.
    """
    pattern = _UNSAFE_LINE if single_line else _UNSAFE
    return pattern.sub(_visible, text)


class StreamSanitizer:
    """`sanitize` for a byte stream that arrives in pieces (a job's stdout or stderr).

    A UTF-8 sequence, or a `\\r\\n`, split across two pieces is handled as one.
    """

    def __init__(self, colours: bool = False) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="backslashreplace")
        self._held_cr = False
        self._colours = colours
        self._held = ""

    def feed(self, data: bytes, final: bool = False) -> str:
        """The safe text for `data` (possibly holding back a trailing `\\r` or partial
        UTF-8 sequence until the next piece, or until `final`)."""
        text = self._decoder.decode(data, final)
        if self._held_cr:
            text = "\r" + text
            self._held_cr = False
        if self._colours:
            text, self._held = self._held + text, ""
            if not final and (start := _SGR_START.search(text)) is not None:
                text, self._held = text[:start.start()], text[start.start():]
        if text.endswith("\r") and not final:
            text = text[:-1]
            self._held_cr = True
        return sanitize_keeping_colours(text) if self._colours else sanitize(text)

    def flush(self) -> str:
        """Whatever was held back, made safe."""
        return self.feed(b"", final=True)


def shown(value: object, limit: int = 80) -> str:
    """`value` quoted for a one-line message: escaped by repr, cut to `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


# A word longer than this in a message (a value someone typed) is cut in the middle.
_LONGEST_WORD = 120


def one_line(text: str) -> str:
    """`text` on one line, every control character shown rather than obeyed, and every
    overlong word (a value someone typed) cut in the middle."""
    words = [word if len(word) <= _LONGEST_WORD else f"{word[:80]}...{word[-20:]}"
             for word in text.split()]
    return sanitize(" ".join(words), single_line=True)
