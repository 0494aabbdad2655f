"""The streaming redactor: whatever the chunking, no secret survives and nothing else moves."""

from __future__ import annotations

import base64
import urllib.parse

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from hodei_agent.redact import Redactor
from hodei_agent.secretforms import MIN_SECRET_BYTES, forms_of

# Secrets and filler from an alphabet without the marker's characters, so a secret can
# only appear in the output if redaction missed it.
ALPHABET = b"abcdefgh-_=\n/+%ABC"
secrets_st = st.binary(min_size=MIN_SECRET_BYTES, max_size=24).map(
    lambda b: bytes(ALPHABET[x % len(ALPHABET)] for x in b)
)
filler_st = st.binary(max_size=40).map(lambda b: bytes(ALPHABET[x % len(ALPHABET)] for x in b))


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for point in [*points, len(data)]:
        pieces.append(data[last:point])
        last = point
    return [p for p in pieces if p]


def _stream(redactor: Redactor, pieces: list[bytes]) -> bytes:
    stream = redactor.stream()
    return b"".join(stream.feed(p) for p in pieces) + stream.flush()


def _strip_markers(data: bytes) -> bytes:
    return data.replace(b"[REDACTED:S]", b"\x00")


@settings(max_examples=400, deadline=None)
@given(secrets_st, st.lists(filler_st, min_size=1, max_size=5), st.lists(st.integers(0, 10**6)))
def test_no_chunking_lets_a_secret_through(secret: bytes, fillers: list[bytes],
                                           cuts: list[int]) -> None:
    redactor = Redactor({"S": secret})
    text = secret.join(fillers) + secret
    out = _stream(redactor, _chunks(text, cuts))
    # Streaming decides exactly like redacting the whole text at once ...
    assert out == redactor.redact(text)
    # ... in which no segment between markers holds the secret.
    assert all(secret not in part for part in _strip_markers(out).split(b"\x00"))


@settings(max_examples=300, deadline=None)
@given(secrets_st, filler_st, st.lists(st.integers(0, 10**6)))
def test_encoded_forms_are_redacted_under_any_chunking(secret: bytes, filler: bytes,
                                                       cuts: list[int]) -> None:
    redactor = Redactor({"S": secret})
    encodings = [
        base64.b64encode(secret), base64.urlsafe_b64encode(secret).rstrip(b"="),
        urllib.parse.quote(secret, safe="").encode(),
        base64.b64encode(filler + secret + filler),
    ]
    text = b" ".join([filler, *encodings, filler])
    out = _stream(redactor, _chunks(text, cuts))
    assert out == redactor.redact(text)
    for part in _strip_markers(out).split(b"\x00"):
        for encoded in encodings[:3]:
            assert encoded not in part


@settings(max_examples=300, deadline=None)
@given(secrets_st, st.binary(max_size=300), st.lists(st.integers(0, 10**6)))
def test_output_without_secrets_passes_unchanged_and_in_order(
    secret: bytes, text: bytes, cuts: list[int]
) -> None:
    redactor = Redactor({"S": secret})
    if any(form in text for form in forms_of(secret)):
        return
    assert _stream(redactor, _chunks(text, cuts)) == text


@settings(max_examples=200, deadline=None)
@given(secrets_st, filler_st, st.integers(1, 10**6))
def test_a_pause_mid_secret_still_redacts_both_halves(secret: bytes, filler: bytes,
                                                      cut: int) -> None:
    redactor = Redactor({"S": secret})
    forms = forms_of(secret)
    assume(not any(f in filler or filler in f for f in forms))
    cut = 1 + cut % (len(secret) - 1)
    stream = redactor.stream()
    out = stream.feed(filler + secret[:cut])
    out += stream.release()  # the hold time passed with nothing more
    out += stream.feed(secret[cut:] + b"|" + filler)
    out += stream.flush()
    assert out.endswith(b"|" + filler)
    leaked = _strip_markers(out[: -len(filler) - 1])
    # At most a fragment shorter than MIN_SECRET_BYTES may show, never more of the value.
    assert secret not in leaked
    assert secret[cut:] not in leaked or len(secret) - cut < MIN_SECRET_BYTES


def test_short_values_and_trailing_newlines() -> None:
    redactor = Redactor({"S": b"abc\n", "T": b"token\n"})
    assert redactor.redact(b"abc token\n") == b"abc [REDACTED:T]"
    assert redactor.redact(b"a token b") == b"a [REDACTED:T] b"
    assert Redactor({}).redact(b"anything") == b"anything"
    assert not Redactor({"S": b"ab"})
