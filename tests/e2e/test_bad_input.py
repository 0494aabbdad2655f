"""Bad input gets one line, a non-zero exit code, no traceback, and loses nothing."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.e2e.harness import BIN, ServerProcess, hodeictl_argv

pytestmark = pytest.mark.e2e


def one_line(output: bytes) -> str:
    text = output.decode().strip()
    assert "Traceback" not in text
    assert len(text.splitlines()) == 1, text
    return text


def test_empty_command(server: ServerProcess) -> None:
    out = server.hodeictl("job", "run", "--")
    assert out.returncode == 2
    assert "nothing to run" in one_line(out.stderr)


def test_negative_timeout(server: ServerProcess) -> None:
    out = server.hodeictl("job", "submit", "--timeout", "-5", "--", "true")
    assert out.returncode != 0
    assert "timeout" in one_line(out.stderr)


def test_unknown_job_id(server: ServerProcess) -> None:
    missing = str(uuid.uuid4())
    out = server.hodeictl("job", "get", missing)
    assert out.returncode == 1
    assert "not found" in one_line(out.stderr)
    # Not an id: a name, looked for as one.
    bad = server.hodeictl("job", "cancel", "not-a-job")
    assert bad.returncode == 1
    assert one_line(bad.stderr) == ("hodeictl: no job has an id starting with, or the name, "
                                    "'not-a-job'")


def test_a_short_id_or_a_name_names_a_job(server: ServerProcess) -> None:
    job_id = server.hodeictl("job", "submit", "--name", "short-id-check", "--",
                             "true").stdout.decode().strip()
    for ref in (job_id[:8], job_id[:8].upper(), "short-id-check", job_id):
        got = server.hodeictl("job", "get", ref, "-o", "json")
        assert got.returncode == 0, (ref, got.stderr)
        assert json.loads(got.stdout)["id"] == job_id


def test_mistyped_field_in_job_file(server: ServerProcess, tmp_path: Path) -> None:
    job = tmp_path / "job.toml"
    job.write_text('comand = ["true"]\n')
    out = server.hodeictl("job", "submit", "-f", str(job))
    assert out.returncode == 2
    line = one_line(out.stderr)
    assert "comand" in line and "command" in line
    listing = server.hodeictl("job", "list", "-o", "json")
    assert listing.stdout.strip() == b"[]"  # nothing half-submitted


def test_unreachable_server(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "HODEI_SERVER": f"127.0.0.1:{port}"}
    out = subprocess.run([*hodeictl_argv(), "job", "list"], env=env, capture_output=True,
                         timeout=60)
    assert out.returncode != 0
    assert "cannot reach" in one_line(out.stderr)


def test_server_port_already_taken(tmp_path: Path, database_url: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        out = subprocess.run(
            [str(BIN / "hodei-server"), "--listen", f"127.0.0.1:{port}",
             "--database-url", database_url],
            capture_output=True, timeout=60,
        )
    assert out.returncode == 1
    assert "--listen" in one_line(out.stderr)


def test_server_with_unreachable_postgres(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = subprocess.run(
        [str(BIN / "hodei-server"), "--listen", "127.0.0.1:0",
         "--database-url", f"postgresql://nobody@127.0.0.1:{port}/none?connect_timeout=2"],
        capture_output=True, timeout=60,
    )
    assert out.returncode == 1
    assert "cannot connect to PostgreSQL" in one_line(out.stderr)


def test_server_config_with_a_mistyped_key(tmp_path: Path) -> None:
    config = tmp_path / "server.toml"
    config.write_text('[[providers]]\ntype = "local"\nmax_worker = 3\n')
    out = subprocess.run([str(BIN / "hodei-server"), "--config", str(config)],
                         capture_output=True, timeout=60)
    assert out.returncode == 1
    assert "did you mean 'max_workers'" in one_line(out.stderr)
