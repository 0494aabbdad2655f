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

Colours (SGR sequences) are neutralised too: nothing the job or the server sends is
interpreted by the terminal. Where the output is not a terminal (a pipe, a file), hodeictl
writes job output byte for byte, untouched; these functions are for terminals (and the TUI).
"""

from __future__ import annotations

import codecs
import re

_BIDI = "\u202a-\u202e\u2066-\u2069"
# Everything the rule above changes; \r is handled by position (only "\r\n" survives).
_UNSAFE = re.compile(f"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\x80-\x9f{_BIDI}]|\r(?!\n)")
_UNSAFE_LINE = re.compile(f"[\x00-\x1f\x7f\x80-\x9f{_BIDI}]")


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

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="backslashreplace")
        self._held_cr = False

    def feed(self, data: bytes, final: bool = False) -> str:
        """The safe text for `data` (possibly holding back a trailing `\\r` or partial
        UTF-8 sequence until the next piece, or until `final`)."""
        text = self._decoder.decode(data, final)
        if self._held_cr:
            text = "\r" + text
            self._held_cr = False
        if text.endswith("\r") and not final:
            text = text[:-1]
            self._held_cr = True
        return sanitize(text)

    def flush(self) -> str:
        """Whatever was held back, made safe."""
        return self.feed(b"", final=True)
