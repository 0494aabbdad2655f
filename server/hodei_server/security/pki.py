"""The certificate authority: a CA, the server's certificate, and agent certificates from CSRs.

Agents generate their own keys and send only certificate signing requests; the server signs
them with the subject it decides (the worker id), never the one the agent asks for.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hodei_server.errors import InvalidSpec

WORKER_URI_PREFIX = "hodei://worker/"
# Certificates start a little in the past, so a peer whose clock is slightly behind accepts them.
BACKDATE = dt.timedelta(minutes=5)
DEFAULT_LOOPBACK_NAMES = ("localhost", "127.0.0.1")
MAX_CSR_BYTES = 16 * 1024


@dataclass(frozen=True)
class Issued:
    """A signed agent certificate."""

    cert_pem: bytes
    serial: str  # lowercase hex, no leading zeros
    not_after: dt.datetime


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def serial_hex(serial: int) -> str:
    return format(serial, "x")


def create_ca(common_name: str, days: float) -> tuple[bytes, bytes]:
    """A new CA: (key PEM, self-signed certificate PEM)."""
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    return key_pem(key), _cert_pem(cert)


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _load_ca(ca_key_pem: bytes, ca_cert_pem: bytes) -> tuple[PrivateKeyTypes, x509.Certificate]:
    key = serialization.load_pem_private_key(ca_key_pem, password=None)
    cert = x509.load_pem_x509_certificate(ca_cert_pem)
    if key.public_key() != cert.public_key():
        raise InvalidSpec("the CA key does not match the CA certificate")
    return key, cert


def _leaf(
    ca_key_pem: bytes, ca_cert_pem: bytes, subject: x509.Name, public_key: object,
    names: list[x509.GeneralName], usage: x509.ObjectIdentifier, lifetime: dt.timedelta,
) -> x509.Certificate:
    ca_key, ca_cert = _load_ca(ca_key_pem, ca_cert_pem)
    now = _now()
    not_after = min(now + lifetime, ca_cert.not_valid_after_utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public_key)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    )
    return builder.sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]


def create_server_cert(
    ca_key_pem: bytes, ca_cert_pem: bytes, hosts: Iterable[str], days: float
) -> tuple[bytes, bytes]:
    """A server key and certificate for `hosts` (plus localhost and 127.0.0.1)."""
    names: list[str] = []
    for host in [*hosts, *DEFAULT_LOOPBACK_NAMES]:
        if host and host not in names:
            names.append(host)
    key = _new_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    cert = _leaf(ca_key_pem, ca_cert_pem, subject, key.public_key(),
                 [_general_name(n) for n in names], ExtendedKeyUsageOID.SERVER_AUTH,
                 dt.timedelta(days=days))
    return key_pem(key), _cert_pem(cert)


def sign_agent_csr(
    ca_key_pem: bytes, ca_cert_pem: bytes, csr_pem: bytes, worker_id: uuid.UUID,
    lifetime: dt.timedelta,
) -> Issued:
    """Sign an agent's CSR as worker `worker_id`, whatever subject the CSR asks for."""
    if len(csr_pem) > MAX_CSR_BYTES:
        raise InvalidSpec("the certificate signing request is too large")
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError:
        raise InvalidSpec("the certificate signing request is not a PEM CSR") from None
    try:
        valid = csr.is_signature_valid
        public_key = csr.public_key()
    except (InvalidSignature, ValueError):
        valid = False
    if not valid:
        raise InvalidSpec("the certificate signing request's signature does not verify")
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or public_key.curve.name not in (
        "secp256r1", "secp384r1"
    ):
        raise InvalidSpec("the certificate signing request must carry a P-256 or P-384 key")
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, str(worker_id))])
    cert = _leaf(ca_key_pem, ca_cert_pem, subject, public_key,
                 [x509.UniformResourceIdentifier(f"{WORKER_URI_PREFIX}{worker_id}")],
                 ExtendedKeyUsageOID.CLIENT_AUTH, lifetime)
    return Issued(_cert_pem(cert), serial_hex(cert.serial_number), cert.not_valid_after_utc)


@dataclass(frozen=True)
class PeerIdentity:
    """Who a verified client certificate says its holder is."""

    worker_id: str
    serial: str


def worker_identity(cert_pem: bytes) -> PeerIdentity | None:
    """The worker a (TLS-verified) client certificate names, or None if it names none."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        return None
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
        if uri.startswith(WORKER_URI_PREFIX):
            try:
                worker_id = uuid.UUID(uri.removeprefix(WORKER_URI_PREFIX))
            except ValueError:
                return None
            return PeerIdentity(str(worker_id), serial_hex(cert.serial_number))
    return None


def certificate_names(cert_pem: bytes) -> list[str]:
    """The DNS names and IP addresses a server certificate is valid for."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    names: list[str] = list(san.get_values_for_type(x509.DNSName))
    names += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return names
