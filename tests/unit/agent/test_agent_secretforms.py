"""Every encoder of `secretforms.ENCODERS`: what it prints is what its library prints, and
a secret printed through it never comes out of the redactor, whatever surrounds it and
however the output is cut into reads."""

from __future__ import annotations

import base64
import html
import json
import shlex
import subprocess
import urllib.parse
import xml.sax.saxutils
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hodei_agent.formsearch import FormIndex
from hodei_agent.redact import Redactor
from hodei_agent.secretforms import ENCODERS, MIN_SECRET_BYTES, Encoder, forms_of, variants

MARKER = b"[REDACTED:S]"
# What makes encodings differ: the characters encoders escape, controls, non-ASCII, bytes
# that are not UTF-8.
SPECIAL = "/+=%'\"\\ \n\r\t<>&~*!()#$`{}[]?:;,@é€😀\u2028\x00\x7f"
texts = st.text(st.one_of(st.sampled_from(SPECIAL), st.characters(codec="utf-8"),
                          st.sampled_from("abcXYZ0189-_.")), min_size=1, max_size=40)
secrets = st.one_of(
    texts.map(lambda text: text.encode()),  # printable, punctuation, non-ASCII
    st.binary(min_size=1, max_size=40),  # binary
    st.tuples(texts, st.binary(max_size=8)).map(lambda p: p[0].encode() + p[1]),  # a mix
    texts.map(lambda text: text.encode() + b"\n"),  # a file's trailing newline
).filter(lambda value: len(value.rstrip(b"\r\n")) >= MIN_SECRET_BYTES)
# Surrounding output: text, binary, or other encodings of look-alike values.
surroundings = st.one_of(st.binary(max_size=60), texts.map(str.encode))
PROPERTY = settings(max_examples=40, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)
            if data[a:b]]


def streamed(redactor: Redactor, pieces: list[bytes]) -> bytes:
    stream = redactor.stream()
    return b"".join(stream.feed(piece) for piece in pieces) + stream.flush()


@pytest.mark.parametrize("encode", ENCODERS, ids=[e.__name__ for e in ENCODERS])
def test_a_secret_printed_through_any_encoder_never_leaves_the_redactor(encode: Encoder) -> None:
    checked = [0]

    @PROPERTY
    @given(secrets, st.lists(surroundings, min_size=2, max_size=4),
           st.lists(st.integers(0, 10**6), max_size=12), st.booleans())
    def check(secret: bytes, around: list[bytes], cuts: list[int], stripped: bool) -> None:
        value = secret.rstrip(b"\r\n") if stripped else secret
        encoded = encode(value)
        assume(encoded is not None and len(encoded) >= MIN_SECRET_BYTES)
        assert encoded is not None
        redactor = Redactor({"S": secret})
        text = encoded.join(around)
        out = streamed(redactor, chunks(text, cuts))
        assert out == redactor.redact(text)
        for part in out.split(MARKER):
            assert encoded not in part, (secret, encoded, out)
        checked[0] += 1

    check()
    print(f"{encode.__name__}: leaks 0 of {checked[0]} random secrets")


def test_every_encoder_has_a_name_and_a_docstring() -> None:
    names = [encode.__name__ for encode in ENCODERS]
    assert len(set(names)) == len(names) >= 40
    assert all(encode.__doc__ for encode in ENCODERS)


# What each text encoder claims to print, from the library itself.
def _text_or_none(render: Callable[[str], str]) -> Callable[[bytes], bytes | None]:
    def encode(value: bytes) -> bytes | None:
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            return None
        return render(text).encode()
    return encode


def _shlex_inside(text: str) -> str:
    quoted = shlex.quote(text)
    return quoted[1:-1] if quoted.startswith("'") and quoted != text else quoted


LIBRARIES: dict[str, Callable[[bytes], bytes | None]] = {
    "raw": lambda v: v,
    "base64_standard": base64.b64encode,
    "base64_url": base64.urlsafe_b64encode,
    "hex_lower": lambda v: v.hex().encode(),
    "percent_all": lambda v: urllib.parse.quote(v, safe="").encode(),
    "percent_path": lambda v: urllib.parse.quote(v).encode(),
    "form_encoded": lambda v: urllib.parse.urlencode({"k": v})[2:].encode(),
    "json_ascii": _text_or_none(lambda t: json.dumps(t)[1:-1]),
    "json_unicode": _text_or_none(lambda t: json.dumps(t, ensure_ascii=False)[1:-1]),
    "json_ascii_slash": _text_or_none(lambda t: json.dumps(t)[1:-1].replace("/", "\\/")),
    "python_repr": _text_or_none(lambda t: repr(t)[1:-1]),
    "python_bytes_repr": lambda v: repr(v)[2:-1].encode(),
    "unicode_escaped": _text_or_none(lambda t: t.encode("unicode_escape").decode()),
    "shell_single_quoted": _text_or_none(_shlex_inside),
    "html_escaped": _text_or_none(html.escape),
    "xml_escaped": _text_or_none(xml.sax.saxutils.escape),
}
BY_NAME = {encode.__name__: encode for encode in ENCODERS}


@pytest.mark.parametrize("name", sorted(LIBRARIES))
@settings(max_examples=150, deadline=None, database=None)
@given(secrets)
def test_an_encoder_prints_what_its_library_prints(name: str, secret: bytes) -> None:
    expected = LIBRARIES[name](secret)
    assume(expected is not None)  # the library takes text; some encoders take bytes too
    if name == "shell_single_quoted" and b"'" not in secret:
        expected = secret  # nothing to replace: the value itself, inside the quotes
    assert BY_NAME[name](secret) == expected


def test_the_escapes_of_other_languages() -> None:
    value = "p/w+x=y é'\"<&>~*`\n\u2028😀".encode()
    assert BY_NAME["json_html_safe"](value) == \
        b"p/w+x=y \xc3\xa9'\\\"\\u003c\\u0026\\u003e~*`\\n\\u2028\xf0\x9f\x98\x80"
    assert BY_NAME["json_gson"](value) == \
        b"p/w+x\\u003dy \xc3\xa9\\u0027\\\"\\u003c\\u0026\\u003e~*`\\n\\u2028\xf0\x9f\x98\x80"
    assert BY_NAME["json_dotnet"](value) == (
        b"p/w\\u002Bx=y \\u00E9\\u0027\\u0022\\u003C\\u0026\\u003E~*\\u0060\\n\\u2028"
        b"\\uD83D\\uDE00")
    assert BY_NAME["json_unicode_slash"](value) == \
        b"p\\/w+x=y \xc3\xa9'\\\"<&>~*`\\n\xe2\x80\xa8\xf0\x9f\x98\x80"
    assert BY_NAME["percent_uri_component"](b"a b/c!'()*~") == b"a%20b%2Fc!'()*~"
    assert BY_NAME["percent_uri"](b"a b/c?d=1&e#f") == b"a%20b/c?d=1&e#f"
    assert BY_NAME["form_encoded_whatwg"](b"a b*~") == b"a+b*%7E"
    assert BY_NAME["form_encoded_php"](b"a b*~") == b"a+b%2A%7E"
    assert BY_NAME["form_encoded_lower"](b"a/b") == b"a%2fb"
    assert BY_NAME["percent_all_lower"](b"a b") == b"a%20b"
    assert BY_NAME["hex_upper"](b"\xab") == b"AB"
    assert BY_NAME["c_escaped"](b'a"\\\n\x01\xff\xc3\xa9\xc2\xa0') == \
        b'a\\"\\\\\\n\\x01\\xff\xc3\xa9\\u00a0'
    assert BY_NAME["html_escaped_numeric"](b"<'\"&>") == b"&lt;&#39;&#34;&amp;&gt;"
    assert BY_NAME["html_escaped_php"](b"'\"") == b"&#039;&quot;"
    assert BY_NAME["xml_escaped_all"](b"'\"<") == b"&apos;&quot;&lt;"
    assert BY_NAME["shell_escaped"](b"\n") is None


@pytest.mark.parametrize("text", ["x y!", "a'b\"c", "~home#tag", "a,b;c|d&e", "(a)[b]{c}",
                                  "$HOME`id`", "a^b*c?d", "p/w+x=y:z@h%q_é"])
def test_shell_escaped_is_what_bash_printf_q_prints(text: str) -> None:
    done = subprocess.run(["bash", "-c", 'printf %q "$1"', "-", text], capture_output=True,
                          check=True, env={"LC_ALL": "C.UTF-8"})
    assert BY_NAME["shell_escaped"](text.encode()) == done.stdout


def test_a_value_with_its_trailing_newline_is_redacted_in_both_variants() -> None:
    assert variants(b"tok-1234\n") == {b"tok-1234\n", b"tok-1234"}
    forms = forms_of(b"tok/1234\n")
    assert {b"tok%2F1234%0A", b"tok%2F1234", b"tok/1234\\n", b"tok\\/1234"} <= forms


@settings(max_examples=300, deadline=None, database=None)
@given(st.lists(secrets, min_size=1, max_size=3), st.binary(max_size=200),
       st.lists(st.integers(0, 10**6), max_size=6), st.integers(0, 50))
def test_the_index_finds_what_searching_every_form_finds(
    values: list[bytes], noise: bytes, cuts: list[int], pos: int,
) -> None:
    forms = {value: sorted(forms_of(value)) for value in values}
    everything = sorted({form for held in forms.values() for form in held})
    # Output made of forms, their pieces and noise.
    pieces = [everything[cut % len(everything)][: 1 + cut % 97] for cut in cuts]
    data = noise[: len(noise) // 2] + b"".join(pieces) + noise[len(noise) // 2:]
    pos = min(pos, len(data))
    index = FormIndex(forms.items())
    naive = sorted((at, form) for form in everything
                   for at in range(pos, len(data)) if data.startswith(form, at))
    assert sorted(index.occurrences(data, pos)) == naive
    tails = [at for at in range(pos, len(data))
             if any(len(form) > len(data) - at and form.startswith(data[at:])
                    for form in everything)]
    assert index.partial_start(data, pos) == (tails[0] if tails else None)
