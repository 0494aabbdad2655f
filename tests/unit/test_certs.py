"""`hodeictl certs init`: the files, their modes, the server certificate's names, no
overwriting without --force."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

from cryptography import x509
from typer.testing import CliRunner

from hodei_server.cli import certs as certcli
from hodeictl.app import app

NAMES = ("ca.key", "ca.crt", "server.key", "server.crt")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _sans(path: Path) -> set[str]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {*san.get_values_for_type(x509.DNSName),
            *(str(ip) for ip in san.get_values_for_type(x509.IPAddress))}


def test_init_writes_a_ca_and_a_server_certificate(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["certs", "init", "--dir", str(tmp_path / "c"),
                                      "--host", "hodei.example.com", "--host", "10.0.0.7",
                                      "--days", "30"])
    assert result.exit_code == 0, result.output
    files = {name: tmp_path / "c" / name for name in NAMES}
    assert all(path.is_file() for path in files.values())
    assert _mode(files["ca.key"]) == 0o600 and _mode(files["server.key"]) == 0o600
    assert _sans(files["server.crt"]) == {"hodei.example.com", "10.0.0.7", "localhost",
                                          "127.0.0.1"}
    ca = x509.load_pem_x509_certificate(files["ca.crt"].read_bytes())
    server = x509.load_pem_x509_certificate(files["server.crt"].read_bytes())
    server.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    lifetime = server.not_valid_after_utc - server.not_valid_before_utc
    assert 30 <= lifetime.days <= 31
    # It says what it wrote and how to configure the server, the agents and hodeictl.
    for expected in ("tls_cert = ", "ca_key = ", "--ca-cert", "hodeictl context set"):
        assert expected in result.output
    ipaddress.ip_address("10.0.0.7")


def test_init_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    assert certcli.main(["init", "--dir", str(tmp_path)]) == 0
    before = {name: (tmp_path / name).read_bytes() for name in NAMES}
    result = CliRunner().invoke(app, ["certs", "init", "--dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "already exist" in result.output and "--force" in result.output
    assert "Traceback" not in result.output
    assert {name: (tmp_path / name).read_bytes() for name in NAMES} == before
    assert certcli.main(["init", "--dir", str(tmp_path), "--force"]) == 0
    assert (tmp_path / "ca.key").read_bytes() != before["ca.key"]
    assert _mode(tmp_path / "ca.key") == 0o600


def test_init_rejects_bad_input_in_one_line(tmp_path: Path) -> None:
    for args in (["--days", "0"], ["--host", "http://x"], ["--host", "a b"]):
        result = CliRunner().invoke(app, ["certs", "init", "--dir", str(tmp_path), *args])
        assert result.exit_code == 2, args  # refused while the command line is parsed
        assert len(result.output.strip().splitlines()) == 1, result.output
        assert result.output.startswith(f"hodeictl: {args[0]}: "), result.output
