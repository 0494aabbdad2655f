"""The agent's key pair and certificate signing request, with the standard library only.

The agent must install with nothing but grpcio and protobuf, and neither can create a key
or a CSR, so this module does the two things the agent needs: a P-256 key (SEC1 PEM, which
gRPC's TLS stack loads) and a PKCS#10 CSR signed with ECDSA-SHA256 (proof that the agent holds
the key). TLS itself — handshakes, record encryption — is gRPC's BoringSSL, never this code.

This is arithmetic in Python integers, not constant-time: it runs only inside the agent's
process, once at registration and once per renewal, so only code already on the agent's host
could time it, and such code could read the key file anyway. The server checks every CSR
with the `cryptography` package before it signs it.
"""

from __future__ import annotations

import base64
import hashlib
import secrets

# NIST P-256 (secp256r1), FIPS 186-4 D.1.2.3.
_P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
_A = _P - 3
_B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_G = (
    0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296,
    0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5,
)

_Point = tuple[int, int] | None

# Object identifiers, DER-encoded contents.
_OID_EC_PUBLIC_KEY = "1.2.840.10045.2.1"
_OID_P256 = "1.2.840.10045.3.1.7"
_OID_ECDSA_SHA256 = "1.2.840.10045.4.3.2"
_OID_COMMON_NAME = "2.5.4.3"


def _add(p: _Point, q: _Point) -> _Point:
    if p is None:
        return q
    if q is None:
        return p
    (x1, y1), (x2, y2) = p, q
    if x1 == x2:
        if (y1 + y2) % _P == 0:
            return None
        slope = (3 * x1 * x1 + _A) * pow(2 * y1, -1, _P) % _P
    else:
        slope = (y2 - y1) * pow(x2 - x1, -1, _P) % _P
    x3 = (slope * slope - x1 - x2) % _P
    return x3, (slope * (x1 - x3) - y1) % _P


def _multiply(k: int, point: _Point) -> _Point:
    """k·point by a Montgomery ladder: one addition and one doubling per bit of k, whatever
    its value (which does not make Python's integer arithmetic constant-time)."""
    r0: _Point = None
    r1 = point
    for bit in bin(k)[2:].zfill(256):
        if bit == "1":
            r0, r1 = _add(r0, r1), _add(r1, r1)
        else:
            r0, r1 = _add(r0, r0), _add(r0, r1)
    return r0


def _on_curve(point: _Point) -> bool:
    if point is None:
        return False
    x, y = point
    return (y * y - (x * x * x + _A * x + _B)) % _P == 0


# DER, just the types a key and a CSR need.

def _tlv(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        length = bytes([size])
    else:
        raw = size.to_bytes((size.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + length + content


def _integer(value: int) -> bytes:
    raw = value.to_bytes(value.bit_length() // 8 + 1, "big")  # room for a sign bit
    while len(raw) > 1 and raw[0] == 0 and raw[1] < 0x80:
        raw = raw[1:]
    return _tlv(0x02, raw)


def _oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    body = bytearray([40 * parts[0] + parts[1]])
    for part in parts[2:]:
        chunk = [part & 0x7F]
        part >>= 7
        while part:
            chunk.append(0x80 | (part & 0x7F))
            part >>= 7
        body += bytes(reversed(chunk))
    return _tlv(0x06, bytes(body))


def _sequence(*items: bytes) -> bytes:
    return _tlv(0x30, b"".join(items))


def _bit_string(data: bytes) -> bytes:
    return _tlv(0x03, b"\x00" + data)


def _pem(label: str, der: bytes) -> bytes:
    body = base64.encodebytes(der).replace(b"\n", b"")
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return (f"-----BEGIN {label}-----\n".encode() + b"\n".join(lines)
            + f"\n-----END {label}-----\n".encode())


class KeyPair:
    """A P-256 private key; `pem()` for gRPC, `csr(name)` for the server."""

    def __init__(self, secret: int | None = None) -> None:
        self._d = secret if secret is not None else secrets.randbelow(_N - 1) + 1
        if not 0 < self._d < _N:
            raise ValueError("a P-256 private key is an integer between 1 and n-1")
        public = _multiply(self._d, _G)
        assert public is not None and _on_curve(public)
        self.public = public

    def _public_point(self) -> bytes:
        x, y = self.public
        return b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big")

    def pem(self) -> bytes:
        """The private key as SEC1 `EC PRIVATE KEY` PEM."""
        der = _sequence(
            _integer(1),
            _tlv(0x04, self._d.to_bytes(32, "big")),
            _tlv(0xA0, _oid(_OID_P256)),
            _tlv(0xA1, _bit_string(self._public_point())),
        )
        return _pem("EC PRIVATE KEY", der)

    def _sign(self, message: bytes) -> bytes:
        """ECDSA-SHA256 of `message`, DER-encoded (r, s)."""
        digest = int.from_bytes(hashlib.sha256(message).digest(), "big")
        while True:
            k = secrets.randbelow(_N - 1) + 1
            point = _multiply(k, _G)
            assert point is not None
            r = point[0] % _N
            s = pow(k, -1, _N) * (digest + r * self._d) % _N
            if r and s:
                return _sequence(_integer(r), _integer(s))

    def csr(self, common_name: str) -> bytes:
        """A PKCS#10 certificate signing request for this key, as PEM."""
        subject = _sequence(
            _tlv(0x31, _sequence(_oid(_OID_COMMON_NAME), _tlv(0x0C, common_name.encode())))
        )
        public_key_info = _sequence(
            _sequence(_oid(_OID_EC_PUBLIC_KEY), _oid(_OID_P256)),
            _bit_string(self._public_point()),
        )
        info = _sequence(_integer(0), subject, public_key_info, _tlv(0xA0, b""))
        der = _sequence(info, _sequence(_oid(_OID_ECDSA_SHA256)),
                        _bit_string(self._sign(info)))
        return _pem("CERTIFICATE REQUEST", der)
