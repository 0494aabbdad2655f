"""An agent on another machine joins with a token minted by `hodei-server token create`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.e2e.harness import BIN, ServerProcess

pytestmark = pytest.mark.e2e


def token_create(database_url: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [str(BIN / "hodei-server"), "token", "create", "--database-url", database_url, *args],
        capture_output=True, timeout=60,
    )


def agent(address: str, token: str, workdir: Path, name: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HODEI_")}
    env["HODEI_BOOTSTRAP_TOKEN"] = token
    return subprocess.Popen(
        [str(BIN / "hodei-agent"), "--server", address, "--name", name, "--slots", "2"],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True,
    )


def test_a_token_lets_exactly_one_agent_join(tmp_path: Path, database_url: str) -> None:
    server = ServerProcess(tmp_path, database_url, workers=0).start()
    first = None
    try:
        minted = token_create(database_url, "--label", "site=lab", "--ttl", "10m")
        assert minted.returncode == 0, minted.stderr
        token = minted.stdout.decode().strip()
        assert len(token) >= 43 and "\n" not in token  # 256 bits, url-safe base64
        assert b"One-time token" in minted.stderr
        first = agent(server.address, token, tmp_path, "lab-1")
        server.wait_workers(1)
        [worker] = json.loads(server.hodeictl("worker", "list", "-o", "json").stdout)
        assert (worker["name"], worker["provider"], worker["labels"]["site"]) == (
            "lab-1", "manual", "lab")
        out = server.hodeictl("job", "run", "--selector", "site=lab", "--", "echo", "joined")
        assert (out.returncode, out.stdout) == (0, b"joined\n")
        # The same token again: refused, one clear line, exit 1.
        second = agent(server.address, token, tmp_path, "lab-2")
        _, err = second.communicate(timeout=60)
        assert second.returncode == 1
        assert b"bootstrap token is unknown, expired or already used" in err
        assert b"Traceback" not in err
    finally:
        if first is not None:
            first.send_signal(signal.SIGTERM)
            first.wait(timeout=60)
        server.stop()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ttl", "-5"], "--ttl expects a duration"),
        (["--ttl", "90d"], "between 1 second and 30 days"),
        (["--label", "nolabel"], "--label expects KEY=VALUE"),
        (["--label", "bad key=x"], "labels: key"),
    ],
)
def test_bad_token_requests_get_one_line(database_url: str, args: list[str],
                                         message: str) -> None:
    out = token_create(database_url, *args)
    assert out.returncode == 1
    lines = out.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
