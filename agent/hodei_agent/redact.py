"""Redacting a job's secrets from its output before a byte of it is batched or sent.

Each secret value is searched in every form `hodei_agent.secretforms` lists: as it is,
without its trailing newline, in base64 (also inside a longer base64 text), hex,
percent- and form-encoded, JSON-, shell-, C-, HTML- and XML-escaped, as Python's repr.
Every occurrence becomes `[REDACTED:NAME]`.

Output arrives in arbitrary pieces, so a secret can be split across two reads. The stream
redactor holds back only what could still be the start of a secret (the longest tail of
what it has seen that is a proper prefix of a form), never ordinary output. A held tail is
released when the next read settles it, at end of file, or after `HOLD_SECONDS` without more
output: then a tail of at least `MIN_SECRET_BYTES` bytes is redacted as a fragment, and the
bytes that would complete the secret are still redacted if they come later.

Redaction protects against a job disclosing a secret by accident. It cannot stop a job that
sets out to leak one (it can print it reversed, or one byte per line).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Protocol

from hodei_agent.formsearch import FormIndex
from hodei_agent.secretforms import MIN_SECRET_BYTES, forms_of

# How long a possible start of a secret may be held back when no more output comes.
HOLD_SECONDS = 1.0


class Redactor:
    """The secrets of one attempt: `redact` whole texts, `stream()` for output pipes."""

    def __init__(self, secrets: Mapping[str, bytes]) -> None:
        owner: dict[bytes, str] = {}
        forms_by_value: list[tuple[bytes, list[bytes]]] = []
        # Longer values first, so that a form shared by two secrets names the longer one.
        for name, value in sorted(secrets.items(), key=lambda item: -len(item[1])):
            forms = [form for form in forms_of(value) if owner.setdefault(form, name) == name]
            forms_by_value.append((value, forms))
        self._owner = owner
        self._forms = sorted(owner, key=len, reverse=True)
        self._markers = {form: f"[REDACTED:{name}]".encode() for form, name in owner.items()}
        self._index = FormIndex(forms_by_value)

    def __bool__(self) -> bool:
        return bool(self._forms)

    def marker(self, form: bytes) -> bytes:
        return self._markers[form]

    def marker_for_fragment(self, fragment: bytes) -> bytes:
        name = next((self._owner[f] for f in self._forms if f.startswith(fragment)), "?")
        return f"[REDACTED:{name}]".encode()

    def redact(self, data: bytes) -> bytes:
        """`data` with every form of every secret replaced."""
        out: list[bytes] = []
        pos = 0
        for start, end, form in self.matches(data, 0):
            out += (data[pos:start], self._markers[form])
            pos = end
        out.append(data[pos:])
        return b"".join(out)

    def redact_text(self, text: str) -> str:
        if not self._forms or not text:
            return text
        return self.redact(text.encode("utf-8", "surrogateescape")).decode(
            "utf-8", "surrogateescape"
        )

    def matches(self, data: bytes, pos: int) -> list[tuple[int, int, bytes]]:
        """(start, end, form) of the occurrences from `pos` on, leftmost first, the longest
        form at a position winning, none overlapping (what a regex alternation of the forms,
        longest first, would find; `bytes.find` is about ten times faster)."""
        found = [(start, -len(form), form) for start, form in self._index.occurrences(data, pos)]
        if not found:
            return []
        found.sort()
        chosen: list[tuple[int, int, bytes]] = []
        end = pos
        for start, negative_length, form in found:
            if start >= end:
                end = start - negative_length
                chosen.append((start, end, form))
        return chosen

    def partial_start(self, data: bytes, pos: int) -> int | None:
        """The first position >= pos whose rest of `data` is a proper prefix of a form."""
        return self._index.partial_start(data, pos)

    def continuations(self, fragment: bytes) -> dict[bytes, bytes]:
        """What could follow `fragment` to complete a form that one of its suffixes starts
        (each with its form's marker)."""
        found: dict[bytes, bytes] = {}
        for form in self._forms:
            first = form[:1]
            at = fragment.find(first, max(0, len(fragment) - len(form) + 1))
            while at != -1:
                tail = len(fragment) - at
                if fragment[at:at + 8] == form[:min(8, tail)] and form.startswith(fragment[at:]):
                    found.setdefault(form[tail:], self._markers[form])
                at = fragment.find(first, at + 1)
        return found

    def stream(self) -> StreamRedactor:
        return StreamRedactor(self)


class StreamRedactor:
    """Redacts one output stream fed in arbitrary pieces; see the module docstring."""

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor
        self._held = b""
        # After a fragment was released on time: the bytes that would complete it.
        self._expected: dict[bytes, bytes] = {}

    @property
    def held(self) -> int:
        return len(self._held)

    def feed(self, data: bytes) -> bytes:
        """What can be released now of what came so far (possibly b"")."""
        return self._process(self._held + data, final=False)

    def flush(self) -> bytes:
        """End of file: everything left, redacted."""
        return self._process(self._held, final=True)

    def release(self) -> bytes:
        """No more output for a while: let the held tail go (redacted if it is long enough
        to be a fragment of a secret), remembering what would complete it."""
        fragment, self._held = self._held, b""
        if not fragment:
            return b""
        pending = {c[len(fragment):]: marker for c, marker in self._expected.items()
                   if c.startswith(fragment)}
        if pending:
            # A further piece of a secret whose start was already released.
            self._expected = {c: marker for c, marker in pending.items() if c}
            return next(iter(pending.values()))
        self._expected = {}
        out = self._process(fragment, final=True)
        if out != fragment:
            return out  # it held complete forms: those are redacted
        # Whichever of its suffixes really began a secret, the rest is still caught.
        self._expected = self._redactor.continuations(fragment)
        if len(fragment) >= MIN_SECRET_BYTES:
            return self._redactor.marker_for_fragment(fragment)
        return fragment

    def _process(self, buf: bytes, *, final: bool) -> bytes:
        redactor = self._redactor
        out: list[bytes] = []
        pos = 0
        if self._expected:
            expected, self._expected = self._expected, {}
            rest = max((c for c in expected if buf.startswith(c)), key=len, default=None)
            if rest is not None:
                out.append(expected[rest])
                pos = len(rest)
            else:
                partial = [c for c in expected if c.startswith(buf)]
                if partial and final:
                    return expected[partial[0]]
                if partial:
                    self._expected = expected
                    self._held = buf
                    return b""
        for start, end, form in redactor.matches(buf, pos):
            # Something that could still become a (longer) secret starts first: wait.
            partial_at = None if final else redactor.partial_start(buf, pos)
            if partial_at is not None and partial_at <= start:
                break
            out += (buf[pos:start], redactor.marker(form))
            pos = end
        partial_at = None if final else redactor.partial_start(buf, pos)
        if partial_at is None:
            out.append(buf[pos:])
            self._held = b""
        else:
            out.append(buf[pos:partial_at])
            self._held = buf[partial_at:]
        return b"".join(out)


class _Reader(Protocol):
    async def read(self, n: int = -1) -> bytes: ...


class RedactingReader:
    """A StreamReader look-alike whose `read` returns the redacted output.

    Safe to cancel at any await (the batcher times reads out): nothing is consumed from the
    pipe then, and what was read is kept until the next call.
    """

    def __init__(self, reader: _Reader, redactor: Redactor,
                 hold_seconds: float = HOLD_SECONDS) -> None:
        self._reader = reader
        self._stream = redactor.stream()
        self._hold = hold_seconds
        self._held_since = 0.0
        self._eof = False

    async def read(self, n: int = -1) -> bytes:
        loop = asyncio.get_running_loop()
        while not self._eof:
            timeout: float | None = None
            if self._stream.held:
                timeout = self._held_since + self._hold - loop.time()
                if timeout <= 0:
                    out = self._stream.release()
                    if out:
                        return out
                    continue
            try:
                async with asyncio.timeout(timeout):
                    data = await self._reader.read(n)
            except TimeoutError:
                continue
            if not data:
                self._eof = True
                return self._stream.flush()
            out = self._stream.feed(data)
            self._held_since = loop.time()
            if out:
                return out
        return b""


def redactor_for(secrets: Iterable[tuple[str, bytes]]) -> Redactor:
    return Redactor(dict(secrets))
