"""The agent's key and CSR, made with the standard library, check out with `cryptography`
(what the server verifies them with) and load in gRPC's TLS."""

from __future__ import annotations

import datetime as dt
import uuid

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from hodei_agent.keys import KeyPair
from hodei_server.security import pki


def test_csr_verifies_and_matches_the_key() -> None:
    for index in range(20):
        key = KeyPair()
        csr = x509.load_pem_x509_csr(key.csr(f"worker-{index}"))
        assert csr.is_signature_valid
        private = serialization.load_pem_private_key(key.pem(), password=None)
        assert private.public_key().public_numbers() == csr.public_key().public_numbers()


def test_keys_are_fresh_each_time() -> None:
    assert len({KeyPair().pem() for _ in range(5)}) == 5


def test_server_signs_it_with_the_worker_id_whatever_the_csr_asks() -> None:
    ca_key, ca_cert = pki.create_ca("test", 1)
    key = KeyPair()
    worker = uuid.uuid4()
    issued = pki.sign_agent_csr(ca_key, ca_cert, key.csr("admin"), worker,
                                dt.timedelta(hours=1))
    cert = x509.load_pem_x509_certificate(issued.cert_pem)
    assert cert.subject.rfc4514_string() == f"CN={worker}"
    assert pki.worker_identity(issued.cert_pem) == pki.PeerIdentity(str(worker), issued.serial)
    # gRPC accepts the pair as a client identity.
    grpc.ssl_channel_credentials(ca_cert, key.pem(), issued.cert_pem)


def test_a_tampered_csr_is_refused() -> None:
    ca_key, ca_cert = pki.create_ca("test", 1)
    pem = KeyPair().csr("w").decode()
    lines = pem.splitlines()
    body = lines[3]
    lines[3] = body[:10] + ("A" if body[10] != "A" else "B") + body[11:]
    with pytest.raises(pki.InvalidSpec):
        pki.sign_agent_csr(ca_key, ca_cert, "\n".join(lines).encode(), uuid.uuid4(),
                           dt.timedelta(hours=1))
