"""The forms in which a job may print a secret: one list of named encoders.

A job seldom prints a secret only as it is. It puts it into a URL, a JSON document, an HTML
page, a shell command, a log line written with `repr()`; it base64s or hex-dumps it. Each
encoder in ENCODERS turns a value into the bytes a common library prints for it, inside a
longer text (so without the quotes around it). `forms_of` applies every encoder to the value
and to the value without its trailing newline; the redactor searches for every form, and
the tests run every encoder of the list.

Most encoders change only a few characters (`/`, `+`, `=`, quotes, `<`, `&`, non-ASCII,
controls), so for a value of letters and digits most forms are the value itself and cost
nothing. An encoder returns None where it does not apply: the text encoders (JSON, repr,
escapes) need UTF-8.

Redaction catches accidents. A job set on leaking a secret can still do it: reversed, one
byte per line, XORed, in an encoding not listed here, or sent over the network.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.parse
from collections.abc import Callable

# Values shorter than this are refused by the server: redacting them would mangle output.
MIN_SECRET_BYTES = 4

Encoder = Callable[[bytes], "bytes | None"]


def _text(value: bytes) -> str | None:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return None


# ---- as it is, base64 and hex ------------------------------------------------------------

def raw(value: bytes) -> bytes:
    """The value as it is."""
    return value


def _inside_base64(encode: Callable[[bytes], bytes], value: bytes, offset: int) -> bytes:
    """The base64 characters whose six bits all come from `value`, when it starts at byte
    `offset` of a three-byte group inside a longer base64 text."""
    encoded = encode(bytes(offset) + value + bytes(2))
    return encoded[-(-8 * offset // 6):(8 * (offset + len(value))) // 6]


def base64_standard(value: bytes) -> bytes:
    """`base64`, Python's `b64encode`, Go's `StdEncoding`, `btoa`."""
    return base64.b64encode(value)


def base64_standard_unpadded(value: bytes) -> bytes:
    """Base64 without its `=` padding (`RawStdEncoding`, JWT-style tools)."""
    return base64.b64encode(value).rstrip(b"=")


def base64_standard_at_0(value: bytes) -> bytes:
    """The value at the start of a three-byte group inside a longer base64 text."""
    return _inside_base64(base64.b64encode, value, 0)


def base64_standard_at_1(value: bytes) -> bytes:
    """The value one byte into a three-byte group inside a longer base64 text."""
    return _inside_base64(base64.b64encode, value, 1)


def base64_standard_at_2(value: bytes) -> bytes:
    """The value two bytes into a three-byte group inside a longer base64 text."""
    return _inside_base64(base64.b64encode, value, 2)


def base64_url(value: bytes) -> bytes:
    """URL-safe base64 (`-` and `_`), as in JWTs and `urlsafe_b64encode`."""
    return base64.urlsafe_b64encode(value)


def base64_url_unpadded(value: bytes) -> bytes:
    """URL-safe base64 without padding (`RawURLEncoding`, JWT segments)."""
    return base64.urlsafe_b64encode(value).rstrip(b"=")


def base64_url_at_0(value: bytes) -> bytes:
    """URL-safe base64, the value at the start of a group inside a longer text."""
    return _inside_base64(base64.urlsafe_b64encode, value, 0)


def base64_url_at_1(value: bytes) -> bytes:
    """URL-safe base64, the value one byte into a group inside a longer text."""
    return _inside_base64(base64.urlsafe_b64encode, value, 1)


def base64_url_at_2(value: bytes) -> bytes:
    """URL-safe base64, the value two bytes into a group inside a longer text."""
    return _inside_base64(base64.urlsafe_b64encode, value, 2)


def hex_lower(value: bytes) -> bytes:
    """Hex digits as `xxd -p`, `bytes.hex()` and `%x` print them."""
    return value.hex().encode()


def hex_upper(value: bytes) -> bytes:
    """Upper-case hex digits (`%X`, `hexdump`-style tools, many Java and .NET helpers)."""
    return value.hex().upper().encode()


# ---- percent-encoding (URLs) and form-encoding --------------------------------------------

_PERCENT = re.compile(rb"%[0-9A-F]{2}")


def _lower_hex(encoded: bytes) -> bytes:
    return _PERCENT.sub(lambda match: match.group().lower(), encoded)


def percent_all(value: bytes) -> bytes:
    """Everything but RFC 3986's unreserved characters escaped: `quote(safe='')`,
    Go's `PathEscape` for most values."""
    return urllib.parse.quote(value, safe="").encode()


def percent_all_lower(value: bytes) -> bytes:
    """`percent_all` with lower-case hex digits."""
    return _lower_hex(percent_all(value))


def percent_path(value: bytes) -> bytes:
    """`/` kept: Python's `quote()` default, the usual way to put a value into a URL path."""
    return urllib.parse.quote(value).encode()


def percent_uri_component(value: bytes) -> bytes:
    """JavaScript's `encodeURIComponent`: also keeps `!'()*`."""
    return urllib.parse.quote(value, safe="!'()*").encode()


def percent_uri(value: bytes) -> bytes:
    """JavaScript's `encodeURI`: keeps the URL's own punctuation as well."""
    return urllib.parse.quote(value, safe=";,/?:@&=+$#!'()*").encode()


def form_encoded(value: bytes) -> bytes:
    """Form-encoding as Python's `urlencode`/`quote_plus` and Go's `QueryEscape` write it:
    a space as `+`."""
    return urllib.parse.quote_plus(value, safe="").encode()


def form_encoded_lower(value: bytes) -> bytes:
    """Form-encoding with lower-case hex digits (.NET's `HttpUtility.UrlEncode`)."""
    return _lower_hex(form_encoded(value))


def form_encoded_whatwg(value: bytes) -> bytes:
    """Form-encoding as JavaScript's `URLSearchParams` and Java's `URLEncoder` write it:
    `*` kept, `~` escaped."""
    return urllib.parse.quote_plus(value, safe="*").encode().replace(b"~", b"%7E")


def form_encoded_php(value: bytes) -> bytes:
    """Form-encoding as PHP's `urlencode` writes it: `*` and `~` escaped too."""
    return form_encoded(value).replace(b"~", b"%7E")


# ---- JSON string contents -------------------------------------------------------------------

def json_ascii(value: bytes) -> bytes | None:
    """JSON with non-ASCII escaped as `\\uXXXX`: Python's `json.dumps` default."""
    text = _text(value)
    return None if text is None else json.dumps(text)[1:-1].encode()


def json_unicode(value: bytes) -> bytes | None:
    """JSON with non-ASCII left as it is: JavaScript's `JSON.stringify`, Rust's serde,
    Jackson, `ensure_ascii=False`."""
    text = _text(value)
    return None if text is None else json.dumps(text, ensure_ascii=False)[1:-1].encode()


def json_ascii_slash(value: bytes) -> bytes | None:
    """PHP's `json_encode` default: non-ASCII escaped, and `/` as `\\/`."""
    encoded = json_ascii(value)
    return None if encoded is None else encoded.replace(b"/", b"\\/")


def json_unicode_slash(value: bytes) -> bytes | None:
    """`/` as `\\/` with non-ASCII left as it is (PHP's `JSON_UNESCAPED_UNICODE`, some
    Java libraries)."""
    encoded = json_unicode(value)
    return None if encoded is None else encoded.replace(b"/", b"\\/")


def _json_escaping(value: bytes, characters: str) -> bytes | None:
    """JSON with non-ASCII left as it is and each of `characters` as `\\uXXXX`."""
    text = _text(value)
    if text is None:
        return None
    inner = json.dumps(text, ensure_ascii=False)[1:-1]
    for character in characters:
        inner = inner.replace(character, f"\\u{ord(character):04x}")
    return inner.encode()


def json_html_safe(value: bytes) -> bytes | None:
    """Go's `encoding/json`: `<`, `>`, `&`, U+2028 and U+2029 as `\\u003c`..."""
    return _json_escaping(value, "&<>\u2028\u2029")


def json_gson(value: bytes) -> bytes | None:
    """Gson's default (HTML-safe): also `=` and `'` as `\\u003d`, `\\u0027`."""
    return _json_escaping(value, "&<>='\u2028\u2029")


_JSON_SHORT = {"\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


def json_dotnet(value: bytes) -> bytes | None:
    """.NET's `System.Text.Json` default: controls, non-ASCII and ``"&'+<>` `` as
    upper-case `\\u0022`..."""
    text = _text(value)
    if text is None:
        return None
    out: list[str] = []
    for char in text:
        code = ord(char)
        if char in _JSON_SHORT:
            out.append(_JSON_SHORT[char])
        elif code > 0xFFFF:  # as a surrogate pair
            code -= 0x10000
            out.append(f"\\u{0xD800 + (code >> 10):04X}\\u{0xDC00 + (code & 0x3FF):04X}")
        elif code < 0x20 or code > 0x7E or char in "\"&'+<>`":
            out.append(f"\\u{code:04X}")
        else:
            out.append(char)
    return "".join(out).encode()


# ---- shell, Python, C ----------------------------------------------------------------------

_SHELL_SPECIAL = set(b" \t'\"\\|&;()<>!{}*[]?^$`,")


def shell_single_quoted(value: bytes) -> bytes:
    """Inside `shlex.quote`'s single quotes: each `'` as `'"'"'`."""
    return value.replace(b"'", b"'\"'\"'")


def shell_escaped(value: bytes) -> bytes | None:
    """Bash's `printf %q` for printable text: a backslash before each special character."""
    if any(byte < 0x20 or byte == 0x7F for byte in value):
        return None  # bash switches to $'...' quoting: see c_escaped
    out = bytearray()
    for index, byte in enumerate(value):
        if byte in _SHELL_SPECIAL or (index == 0 and byte in b"~#"):
            out.append(0x5C)
        out.append(byte)
    return bytes(out)


def python_repr(value: bytes) -> bytes | None:
    """Inside the quotes of a Python `repr()` or `%r` of the value as text."""
    text = _text(value)
    return None if text is None else repr(text)[1:-1].encode()


def python_bytes_repr(value: bytes) -> bytes:
    """Inside the quotes of a Python `repr()` of the value as bytes (`b'...'`)."""
    return repr(value)[2:-1].encode()


_C_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
              "\v": "\\v", "\\": "\\\\", '"': '\\"'}


def c_escaped(value: bytes) -> bytes:
    """C-style backslash escapes as Go's `%q`/`strconv.Quote` write them: `\\n`, `\\"`,
    `\\xNN` for other controls and for bytes that are not UTF-8."""
    out: list[str] = []
    for char in value.decode("utf-8", "surrogateescape"):
        code = ord(char)
        if char in _C_ESCAPES:
            out.append(_C_ESCAPES[char])
        elif 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8
            out.append(f"\\x{code - 0xDC00:02x}")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif not char.isprintable():
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(char)
    return "".join(out).encode("utf-8", "surrogateescape")


def unicode_escaped(value: bytes) -> bytes | None:
    """Python's `unicode_escape` codec: non-ASCII as `\\xNN`, `\\uNNNN`, controls escaped."""
    text = _text(value)
    return None if text is None else text.encode("unicode_escape")


# ---- HTML and XML -------------------------------------------------------------------------

def _entities(value: bytes, table: tuple[tuple[bytes, bytes], ...]) -> bytes:
    for character, entity in table:  # `&` first, so entities are not escaped again
        value = value.replace(character, entity)
    return value


_AMP_LT_GT = ((b"&", b"&amp;"), (b"<", b"&lt;"), (b">", b"&gt;"))


def html_escaped(value: bytes) -> bytes:
    """Python's `html.escape`: `&amp; &lt; &gt; &quot; &#x27;`."""
    return _entities(value, (*_AMP_LT_GT, (b'"', b"&quot;"), (b"'", b"&#x27;")))


def html_escaped_numeric(value: bytes) -> bytes:
    """Go's `html.EscapeString`, Jinja and MarkupSafe: quotes as `&#34;` and `&#39;`."""
    return _entities(value, (*_AMP_LT_GT, (b'"', b"&#34;"), (b"'", b"&#39;")))


def html_escaped_php(value: bytes) -> bytes:
    """PHP's `htmlspecialchars`: quotes as `&quot;` and `&#039;`."""
    return _entities(value, (*_AMP_LT_GT, (b'"', b"&quot;"), (b"'", b"&#039;")))


def xml_escaped(value: bytes) -> bytes:
    """XML text: `&amp; &lt; &gt;` only (`xml.sax.saxutils.escape`, ElementTree)."""
    return _entities(value, _AMP_LT_GT)


def xml_escaped_all(value: bytes) -> bytes:
    """XML with both quotes escaped: `&quot;` and `&apos;` (Apache Commons, lxml attrs)."""
    return _entities(value, (*_AMP_LT_GT, (b'"', b"&quot;"), (b"'", b"&apos;")))


ENCODERS: tuple[Encoder, ...] = (
    raw,
    base64_standard, base64_standard_unpadded,
    base64_standard_at_0, base64_standard_at_1, base64_standard_at_2,
    base64_url, base64_url_unpadded, base64_url_at_0, base64_url_at_1, base64_url_at_2,
    hex_lower, hex_upper,
    percent_all, percent_all_lower, percent_path, percent_uri_component, percent_uri,
    form_encoded, form_encoded_lower, form_encoded_whatwg, form_encoded_php,
    json_ascii, json_unicode, json_ascii_slash, json_unicode_slash, json_html_safe,
    json_gson, json_dotnet,
    shell_single_quoted, shell_escaped, python_repr, python_bytes_repr, c_escaped,
    unicode_escaped,
    html_escaped, html_escaped_numeric, html_escaped_php, xml_escaped, xml_escaped_all,
)


def variants(value: bytes) -> set[bytes]:
    """The value, and the value without its trailing newline (`$(cat file)` drops it)."""
    return {value, value.rstrip(b"\r\n")}


def forms_of(value: bytes) -> set[bytes]:
    """Every form of `value` to redact (each at least MIN_SECRET_BYTES long)."""
    forms: set[bytes] = set()
    for item in variants(value):
        if len(item) < MIN_SECRET_BYTES:
            continue
        for encode in ENCODERS:
            form = encode(item)
            if form is not None and len(form) >= MIN_SECRET_BYTES:
                forms.add(form)
    return forms
