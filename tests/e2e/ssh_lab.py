"""Real OpenSSH hosts for the `ssh` provider's tests (scripts/ssh-lab.sh), one lab a session.

Each host is an sshd in a network namespace of its own, with its own address, user, home
and host key; see the script for the hosts it starts.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.e2e.harness import BIN, ServerProcess

ROOT = Path(__file__).resolve().parents[2]
LAB_SCRIPT = ROOT / "scripts" / "ssh-lab.sh"


@dataclass(frozen=True)
class LabHost:
    name: str
    address: str
    port: int
    user: str
    home: Path
    host_key: str


@dataclass
class Lab:
    directory: Path
    bridge: str
    hosts: dict[str, LabHost]
    wheel_cache: Path

    @property
    def client_key(self) -> Path:
        return self.directory / "client" / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.directory / "client" / "known_hosts"

    def env(self, database_url: str) -> dict[str, str]:
        return {**os.environ, "HODEI_DATABASE_URL": database_url,
                "HODEI_SSH_KNOWN_HOSTS": str(self.known_hosts),
                "HODEI_WHEEL_CACHE": str(self.wheel_cache)}

    def user_pids(self, name: str) -> list[int]:
        """The live processes of a host's user (anything Hodei left running there)."""
        done = subprocess.run(["ps", "-o", "pid=,stat=", "-u", self.hosts[name].user],
                              capture_output=True, text=True, check=False)
        pids = []
        for line in done.stdout.splitlines():
            pid, _, stat = line.strip().partition(" ")
            if pid and not stat.strip().startswith("Z"):
                pids.append(int(pid))
        return pids

    def reset(self, name: str) -> None:
        """Leave a host as the lab made it: no process of its user, no ~/.hodei."""
        for pid in self.user_pids(name):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.hosts[name].home / ".hodei", ignore_errors=True)
        deadline = time.monotonic() + 10
        while self.user_pids(name) and time.monotonic() < deadline:
            time.sleep(0.05)


@dataclass
class SshServer(ServerProcess):
    """A `hodei-server` listening where the lab's hosts reach it, with no local workers."""

    listen: str = ""
    provider_block: str = field(default="")

    def config_text(self) -> str:
        return (
            f'listen = "{self.listen}"\n'
            f"{'' if self.ca_cert else 'insecure = true'}\n"
            "heartbeat_interval = 1.0\n"
            "resync_interval = 0.5\n"
            f"{self.extra_config}\n"
            "[[providers]]\n"
            'type = "local"\n'
            'name = "local"\n'
            "min_workers = 0\n"
            "max_workers = 0\n"
            f"{self.provider_block}\n"
        )


def hodeictl_host(lab: Lab, database_url: str, *args: str, timeout: float = 300.0,
                  input: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """`hodeictl host ARGS...` on the test's database, trusting the lab's known_hosts."""
    return subprocess.run([str(BIN / "hodeictl"), "host", *args], env=lab.env(database_url),
                          capture_output=True, text=True, timeout=timeout,
                          input=input.decode() if input is not None else None)


def _parse(directory: Path) -> dict[str, LabHost]:
    hosts = {}
    lines = (directory / "hosts.tsv").read_text().splitlines()[1:]
    for line in lines:
        name, address, port, user, home, key = line.split("\t")
        hosts[name] = LabHost(name, address, int(port), user, Path(home), key)
    return hosts


@pytest.fixture(scope="session")
def ssh_lab() -> Iterator[Lab]:
    """The lab, started once a session (and stopped after).

    Outside CI, a machine that cannot start it skips these tests; in CI (`CI=true`) that is
    a failure.
    """
    directory = Path(tempfile.mkdtemp(prefix="hodei-ssh-lab-"))
    wheel_cache = Path(tempfile.mkdtemp(prefix="hodei-wheels-"))
    try:
        up = subprocess.run([str(LAB_SCRIPT), "up", str(directory)], capture_output=True,
                            text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        up = subprocess.CompletedProcess([], 1, "", str(exc))
    if up.returncode != 0:
        shutil.rmtree(directory, ignore_errors=True)
        shutil.rmtree(wheel_cache, ignore_errors=True)
        message = f"cannot start the ssh lab (real sshds in network namespaces):\n{up.stderr}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    try:
        env = dict(os.environ)
        for key in ("HODEI_SSH_KNOWN_HOSTS",):
            env.pop(key, None)
        bridge = ""
        for line in (directory / "lab.env").read_text().splitlines():
            key, _, value = line.partition("=")
            if key == "BRIDGE_ADDRESS":
                bridge = value
        yield Lab(directory, bridge, _parse(directory), wheel_cache)
    finally:
        subprocess.run([str(LAB_SCRIPT), "down", str(directory)], capture_output=True,
                       timeout=120, check=False)
        shutil.rmtree(directory, ignore_errors=True)
        shutil.rmtree(wheel_cache, ignore_errors=True)


@pytest.fixture
def ssh_server(tmp_path: Path, database_url: str, ssh_lab: Lab) -> Iterator[SshServer]:
    """A server the lab's hosts dial; the lab's hosts are reset after the test."""
    server = SshServer(tmp_path, database_url, workers=0, listen=f"{ssh_lab.bridge}:0")
    server.start(wait_workers=False)
    try:
        yield server
    finally:
        server.stop()
        for name in ssh_lab.hosts:
            ssh_lab.reset(name)
