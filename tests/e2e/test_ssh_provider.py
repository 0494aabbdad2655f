"""The `ssh` provider against real OpenSSH hosts (scripts/ssh-lab.sh): host keys, bootstrap,
jobs on the hosts, restarts, re-runs, upgrades and removal."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import psycopg
import pytest

from tests.e2e.ssh_lab import Lab, SshServer, hodeictl_host
from tests.e2e.test_core_loop import job_json, wait_state

pytestmark = pytest.mark.e2e
pytest_plugins = ["tests.e2e.ssh_lab"]


def add(lab: Lab, db: str, name: str, host: str | None = None, *extra: str) -> None:
    target = lab.hosts[host or name]
    out = hodeictl_host(lab, db, "add", name, "--address", target.address, "--user",
                        target.user, "--key", str(lab.client_key), *extra)
    assert out.returncode == 0, out.stderr


def bootstrap(lab: Lab, server: SshServer, *args: str) -> tuple[str, str]:
    out = hodeictl_host(lab, server.database_url, "bootstrap", *args, "--agent-server",
                        server.address, "--insecure")
    assert out.returncode == 0, out.stderr
    return out.stdout, out.stderr


def remote_pid(lab: Lab, name: str, file: str) -> int:
    return int((lab.hosts[name].home / ".hodei" / file).read_text())


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return status != "Z"


def test_bootstrap_four_hosts_run_jobs_rerun_and_remove(ssh_lab: Lab,
                                                        ssh_server: SshServer) -> None:
    db = ssh_server.database_url
    names = ["h1", "h2", "h3", "h4"]
    for name in names:
        add(ssh_lab, db, name, None, "--label", f"host={name}")

    # Four hosts at once, with each one's progress.
    out, progress = bootstrap(ssh_lab, ssh_server, *names, "--parallel", "4")
    for name in names:
        assert f"{name}: ready (agent " in out
        for step in ("preflight", "upload", "install", "token", "start (process)"):
            assert f"{name}: {step}" in progress
    ssh_server.wait_workers(4, timeout=120)

    # A job runs on the host its selector names, as that host's user; its output returns.
    run = ssh_server.hodeictl("job", "run", "-s", "host=h3", "--", "sh", "-c",
                              "id -un; printf 'out\\n'; printf 'err\\n' >&2")
    assert run.returncode == 0, run.stderr
    assert run.stdout.decode() == f"{ssh_lab.hosts['h3'].user}\nout\n"
    assert run.stderr.decode() == "err\n"

    # The token was a 0600 file, never on a command line.
    token_file = ssh_lab.hosts["h1"].home / ".hodei" / "token"
    assert token_file.stat().st_mode & 0o777 == 0o600
    token = token_file.read_text().strip()
    for pid in ssh_lab.user_pids("h1"):
        assert token not in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")

    # A re-run on healthy hosts changes nothing: same agent processes.
    before = {name: remote_pid(ssh_lab, name, "agent.pid") for name in names}
    out, progress = bootstrap(ssh_lab, ssh_server, "--all")
    for name in names:
        assert f"{name}: unchanged" in out
    assert "install" not in progress and "token" not in progress
    assert {name: remote_pid(ssh_lab, name, "agent.pid") for name in names} == before

    listed = json.loads(hodeictl_host(ssh_lab, db, "list", "-o", "json").stdout)
    assert {h["name"]: (h["state"], h["worker_state"]) for h in listed} == {
        name: ("ready", "READY") for name in names}

    # Removal drains and stops the agent, deletes what bootstrap made, revokes the worker.
    for name in names:
        out2 = hodeictl_host(ssh_lab, db, "remove", name)
        assert out2.returncode == 0, out2.stderr
        assert f"worker {name} revoked" in out2.stderr
        assert ssh_lab.user_pids(name) == []
        assert sorted(p.name for p in ssh_lab.hosts[name].home.iterdir()) == [".ssh"]
    with psycopg.connect(db) as conn:
        states = conn.execute("SELECT DISTINCT state FROM workers").fetchall()
        hosts = conn.execute("SELECT count(*) FROM ssh_hosts").fetchone()
    assert states == [("TERMINATED",)]
    assert hosts == (0,)


def test_agent_killed_is_restarted_and_its_job_reattached(ssh_lab: Lab,
                                                          ssh_server: SshServer) -> None:
    db = ssh_server.database_url
    add(ssh_lab, db, "h2", None, "--label", "host=h2")
    bootstrap(ssh_lab, ssh_server, "h2")
    ssh_server.wait_workers(1, timeout=120)
    job_id = ssh_server.hodeictl(
        "job", "submit", "-s", "host=h2", "--", "sh", "-c",
        "echo before; sleep 6; echo after").stdout.decode().strip()
    wait_state(ssh_server, job_id, {"RUNNING"}, 120)
    time.sleep(1)
    agent = remote_pid(ssh_lab, "h2", "agent.pid")
    os.kill(agent, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            restarted = remote_pid(ssh_lab, "h2", "agent.pid")
        except (OSError, ValueError):
            restarted = agent
        if restarted != agent and alive(restarted):
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the agent was not restarted")
    assert wait_state(ssh_server, job_id, {"SUCCEEDED", "FAILED", "LOST"}, 60) == "SUCCEEDED"
    job = job_json(ssh_server, job_id)
    assert len(job["attempts"]) == 1  # type: ignore[arg-type]  # re-attached, not retried
    logs = ssh_server.hodeictl("job", "logs", job_id)
    assert logs.stdout == b"before\nafter\n"


def test_upgrade_reinstalls_an_old_host(ssh_lab: Lab, ssh_server: SshServer) -> None:
    db = ssh_server.database_url
    add(ssh_lab, db, "h4")
    bootstrap(ssh_lab, ssh_server, "h4")
    version = ssh_lab.hosts["h4"].home / ".hodei" / "version"
    marker = version.read_text().strip()
    version.write_text("0.0.1+old\n")  # as an older release left it
    old_agent = remote_pid(ssh_lab, "h4", "agent.pid")
    out, progress = bootstrap(ssh_lab, ssh_server, "h4")
    assert "h4: ready" in out
    assert "h4: install" in progress
    assert version.read_text().strip() == marker
    assert not alive(old_agent)
    assert alive(remote_pid(ssh_lab, "h4", "agent.pid"))


def test_host_keys_are_checked(ssh_lab: Lab, ssh_server: SshServer) -> None:
    db = ssh_server.database_url
    h1_fp = _fingerprint(ssh_lab.hosts["h1"].host_key)
    h2_fp = _fingerprint(ssh_lab.hosts["h2"].host_key)

    # Pinned to another key than the host has: refused, naming both.
    add(ssh_lab, db, "impostor", "h1", "--fingerprint", h2_fp)
    out = hodeictl_host(ssh_lab, db, "check", "impostor")
    assert out.returncode == 1
    assert out.stderr.count("\n") == 1
    assert f"pinned {h2_fp}, the host presented {h1_fp}" in out.stderr

    # `trust` shows the key and pins it when confirmed (here by the expected fingerprint).
    wrong = hodeictl_host(ssh_lab, db, "trust", "impostor", "--fingerprint", h2_fp)
    assert wrong.returncode == 1 and "nothing pinned" in wrong.stderr
    pinned = hodeictl_host(ssh_lab, db, "trust", "impostor", "--fingerprint", h1_fp)
    assert pinned.returncode == 0, pinned.stderr
    assert hodeictl_host(ssh_lab, db, "check", "impostor").returncode == 0

    # known_hosts (the default): a host missing from it, or listed with another key.
    add(ssh_lab, db, "h3")
    assert hodeictl_host(ssh_lab, db, "check", "h3").returncode == 0
    known = ssh_lab.directory / "client" / "known_hosts.changed"
    known.write_text(f"{ssh_lab.hosts['h3'].address} {ssh_lab.hosts['h4'].host_key}\n")
    env_out = _with_known_hosts(ssh_lab, db, known, "check", "h3")
    assert env_out.returncode == 1
    assert (f"has {_fingerprint(ssh_lab.hosts['h4'].host_key)}, the host presented "
            f"{_fingerprint(ssh_lab.hosts['h3'].host_key)}") in env_out.stderr
    known.write_text("")
    missing = _with_known_hosts(ssh_lab, db, known, "check", "h3")
    assert missing.returncode == 1 and "is not in" in missing.stderr

    # Trust on first use only when asked for: the first key seen is pinned.
    add(ssh_lab, db, "h4", None, "--trust-on-first-use")
    assert hodeictl_host(ssh_lab, db, "check", "h4").returncode == 0
    listed = {h["name"]: h for h in json.loads(
        hodeictl_host(ssh_lab, db, "list", "-o", "json").stdout)}
    assert listed["h4"]["fingerprint"] == _fingerprint(ssh_lab.hosts["h4"].host_key)


def _with_known_hosts(lab: Lab, db: str, path: Path, *args: str) -> object:
    import subprocess

    from tests.e2e.harness import BIN

    env = {**lab.env(db), "HODEI_SSH_KNOWN_HOSTS": str(path)}
    return subprocess.run([str(BIN / "hodeictl"), "host", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def _fingerprint(line: str) -> str:
    import asyncssh

    return str(asyncssh.import_public_key(line).get_fingerprint("sha256"))


def test_one_line_for_a_wrong_key_no_python_and_bad_input(ssh_lab: Lab,
                                                          ssh_server: SshServer,
                                                          tmp_path: Path) -> None:
    import subprocess

    db = ssh_server.database_url
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)],
                   check=True)
    target = ssh_lab.hosts["h1"]
    assert hodeictl_host(ssh_lab, db, "add", "wrongkey", "--address", target.address,
                         "--user", target.user, "--key", str(other)).returncode == 0
    out = hodeictl_host(ssh_lab, db, "check", "wrongkey")
    assert out.returncode == 1
    assert out.stderr.count("\n") == 1 and "permission denied" in out.stderr

    add(ssh_lab, db, "nopy")
    out = hodeictl_host(ssh_lab, db, "bootstrap", "nopy", "--agent-server",
                        ssh_server.address, "--insecure")
    assert out.returncode == 1
    assert "host nopy: preflight: no Python found" in out.stderr
    assert not (ssh_lab.hosts["nopy"].home / ".hodei").exists()

    for args in (["add", "bad name", "--address", "x", "--user", "u"],
                 ["add", "ok", "--address", "x", "--user", "u;rm -rf ~"],
                 ["add", "ok", "--address", "-oProxyCommand=x", "--user", "u"],
                 ["remove", "$(reboot)"],
                 ["check", "nosuchhost"]):
        bad = hodeictl_host(ssh_lab, db, *args)
        assert bad.returncode == 2, (args, bad.stderr)
        assert bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr


def test_bastion_only_host(ssh_lab: Lab, ssh_server: SshServer) -> None:
    db = ssh_server.database_url
    add(ssh_lab, db, "bastion")
    add(ssh_lab, db, "hidden", None, "--jump", "bastion")
    out = hodeictl_host(ssh_lab, db, "check", "hidden")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("hidden: Linux")


def test_hostile_strings_reach_the_host_as_data(ssh_lab: Lab) -> None:
    """Whatever a name, label, user or path holds arrives as one argument, never as code:
    through sshd and the user's login shell, with `shell` and with `script`'s $1."""
    import asyncio

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from hodei_ssh import remote
    from hodei_ssh.quoting import script, shell
    from hodei_ssh.registry import Host

    target = ssh_lab.hosts["h1"]
    host = Host(name="h1", address=target.address, username=target.user,
                key_path=str(ssh_lab.client_key), host_key_mode="pinned",
                fingerprint=_fingerprint(target.host_key))
    canary = target.home / "pwned"
    hostile = st.one_of(
        st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                max_size=40),
        st.sampled_from([f"$(touch {canary})", f"`touch {canary}`", f"; touch {canary}",
                         f"' ; touch {canary}; '", "\"$HOME\"", "-n", "--", "*", "~",
                         "a\nb", "\\", "'", "%s%s", "${IFS}", "!!", "&"]),
    )
    loop = asyncio.new_event_loop()

    async def lookup(name: str) -> Host:
        raise AssertionError(name)

    stack = remote.connect(host, lookup)
    conn = loop.run_until_complete(stack.__aenter__())
    try:
        @settings(max_examples=60, deadline=None,
                  suppress_health_check=[HealthCheck.function_scoped_fixture])
        @given(hostile)
        def roundtrip(value: str) -> None:
            for command in (shell("printf", "%s", value), script('printf "%s" "$1"', value)):
                result = loop.run_until_complete(conn.run(command, encoding=None))
                assert result.exit_status == 0
                assert result.stdout == value.encode()

        roundtrip()
        assert not canary.exists()
    finally:
        loop.run_until_complete(stack.__aexit__(None, None, None))
        loop.close()


def test_provider_bootstraps_a_bastion_only_host_through_a_tunnel(
        ssh_lab: Lab, tmp_path: Path, database_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The server's `ssh` provider draws a worker from the registry: the host is reached
    through the bastion and, unable to reach the server, dials it through a remote port
    forward the provider holds."""
    add(ssh_lab, database_url, "bastion")
    add(ssh_lab, database_url, "hidden", None, "--jump", "bastion", "--label", "where=hidden")
    for key, value in ssh_lab.env(database_url).items():
        if key.startswith("HODEI_"):
            monkeypatch.setenv(key, value)
    server = SshServer(tmp_path, database_url, workers=1, listen=f"{ssh_lab.bridge}:0",
                       provider_block=('[[providers]]\ntype = "ssh"\nname = "ssh"\n'
                                       'hosts = ["hidden"]\nconnect = "tunnel"\n'
                                       "min_workers = 1\nmax_workers = 1\n"))
    server.start(wait_workers=False)
    try:
        server.wait_workers(1, timeout=120)
        run = server.hodeictl("job", "run", "-s", "where=hidden", "--", "sh", "-c",
                              "id -un; echo through the tunnel")
        assert run.returncode == 0, run.stderr
        assert run.stdout.decode() == f"{ssh_lab.hosts['hidden'].user}\nthrough the tunnel\n"
        agent_json = json.loads((ssh_lab.hosts["hidden"].home / ".hodei" / "agent.json")
                                .read_text())
        assert agent_json[agent_json.index("--server") + 1].startswith("127.0.0.1:")
        listed = {h["name"]: h for h in json.loads(
            hodeictl_host(ssh_lab, database_url, "list", "-o", "json").stdout)}
        assert listed["hidden"]["state"] == "ready"
    finally:
        server.stop()
        ssh_lab.reset("hidden")
        ssh_lab.reset("bastion")


def test_provider_starts_a_worker_on_demand_and_retires_it_when_idle(
        ssh_lab: Lab, tmp_path: Path, database_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Demand bootstraps a host of the pool; idle, the worker is drained and the host is
    left as it was: no process, no file."""
    add(ssh_lab, database_url, "h3", None, "--label", "rack=r1")
    for key, value in ssh_lab.env(database_url).items():
        if key.startswith("HODEI_"):
            monkeypatch.setenv(key, value)
    server = SshServer(tmp_path, database_url, workers=0, listen=f"{ssh_lab.bridge}:0",
                       provider_block=('[[providers]]\ntype = "ssh"\nname = "metal"\n'
                                       'hosts = ["h3"]\nmin_workers = 0\nmax_workers = 1\n'
                                       "idle_timeout = 1.0\n"))
    server.start(wait_workers=False)
    try:
        # The demand a provider answers is what its own labels can take (a host's labels
        # are the worker's too, once it runs).
        run = server.hodeictl("job", "run", "-s", "provider=metal", "--", "sh", "-c",
                              "id -un", timeout=180)
        assert run.returncode == 0, run.stderr
        assert run.stdout.decode() == f"{ssh_lab.hosts['h3'].user}\n"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            listed = {h["name"]: h for h in json.loads(
                hodeictl_host(ssh_lab, database_url, "list", "-o", "json").stdout)}
            if listed["h3"]["state"] == "registered" and not ssh_lab.user_pids("h3"):
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"the idle worker was not retired: {listed['h3']}")
        assert listed["h3"]["worker_state"] == "TERMINATED"
        assert sorted(p.name for p in ssh_lab.hosts["h3"].home.iterdir()) == [".ssh"]
    finally:
        server.stop()
        ssh_lab.reset("h3")


def test_bootstrap_with_tls_the_agent_makes_its_own_key(ssh_lab: Lab, tmp_path: Path,
                                                        database_url: str) -> None:
    """With TLS the host gets the CA certificate only: the agent makes its key and has it
    signed (the CSR flow), and speaks TLS to the server."""
    import socket
    import subprocess

    from tests.e2e.harness import BIN

    certs = tmp_path / "certs"
    made = subprocess.run([str(BIN / "hodeictl"), "certs", "init", "--dir", str(certs),
                           "--host", ssh_lab.bridge], capture_output=True, text=True,
                          timeout=60)
    assert made.returncode == 0, made.stderr
    with socket.socket() as probe:
        probe.bind((ssh_lab.bridge, 0))
        agent_port = probe.getsockname()[1]
    server = SshServer(tmp_path, database_url, workers=0, listen=f"{ssh_lab.bridge}:0",
                       ca_cert=certs / "ca.crt", extra_config=(
                           f'tls_cert = "{certs}/server.crt"\ntls_key = "{certs}/server.key"\n'
                           f'ca_cert = "{certs}/ca.crt"\nca_key = "{certs}/ca.key"\n'
                           f'agent_listen = "{ssh_lab.bridge}:{agent_port}"\n'))
    server.start(wait_workers=False)
    try:
        add(ssh_lab, database_url, "h1", None, "--label", "tls=yes")
        out = hodeictl_host(ssh_lab, database_url, "bootstrap", "h1", "--agent-server",
                            server.address, "--ca-cert", str(certs / "ca.crt"))
        assert out.returncode == 0, out.stderr
        server.wait_workers(1, timeout=120)
        run = server.hodeictl("job", "run", "-s", "tls=yes", "--", "echo", "over tls")
        assert run.returncode == 0, run.stderr
        assert run.stdout == b"over tls\n"
        base = ssh_lab.hosts["h1"].home / ".hodei"
        assert (base / "ca.crt").read_bytes() == (certs / "ca.crt").read_bytes()
        assert "--insecure" not in json.loads((base / "agent.json").read_text())
        keys = [p for p in (base / "state").rglob("*") if "key" in p.name and p.is_file()]
        assert keys and all(p.stat().st_mode & 0o077 == 0 for p in keys)
    finally:
        server.stop()
        ssh_lab.reset("h1")


def test_a_restarted_server_takes_over_its_providers_hosts(
        ssh_lab: Lab, tmp_path: Path, database_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The server is killed; its agents run on and the next server process takes their
    hosts over: same agent, no second bootstrap, jobs run there, and when it retires the
    worker the host is cleaned as one it bootstrapped itself."""
    add(ssh_lab, database_url, "h4")
    for key, value in ssh_lab.env(database_url).items():
        if key.startswith("HODEI_"):
            monkeypatch.setenv(key, value)
    provider = ('[[providers]]\ntype = "ssh"\nname = "metal"\nhosts = ["h4"]\n'
                "min_workers = 1\nmax_workers = 1\n")
    first = SshServer(tmp_path / "first", database_url, workers=0,
                      listen=f"{ssh_lab.bridge}:0", provider_block=provider)
    first.workdir.mkdir()
    first.start(wait_workers=False)
    try:
        first.wait_workers(1, timeout=120)
        agent = remote_pid(ssh_lab, "h4", "agent.pid")
        port = first.address.rsplit(":", 1)[1]
    finally:
        assert first.proc is not None
        first.proc.kill()
        first.proc.wait()
    # The next process listens where the agents dial.
    second = SshServer(tmp_path / "second", database_url, workers=0,
                       listen=f"{ssh_lab.bridge}:{port}",
                       provider_block=provider.replace("min_workers = 1", "min_workers = 0")
                       + "idle_timeout = 2.0\n")
    second.workdir.mkdir()
    second.token = first.token
    second.start(wait_workers=False)
    try:
        second.wait_workers(1, timeout=90)
        run = second.hodeictl("job", "run", "-s", "provider=metal", "--", "echo", "still here")
        assert run.returncode == 0, run.stderr
        assert run.stdout == b"still here\n"
        assert remote_pid(ssh_lab, "h4", "agent.pid") == agent
        deadline = time.monotonic() + 60
        while ssh_lab.user_pids("h4") or (ssh_lab.hosts["h4"].home / ".hodei").exists():
            assert time.monotonic() < deadline, "the adopted worker's host was not cleaned"
            time.sleep(0.2)
        listed = {h["name"]: h for h in json.loads(
            hodeictl_host(ssh_lab, database_url, "list", "-o", "json").stdout)}
        assert listed["h4"]["state"] == "registered"
    finally:
        second.stop()
        ssh_lab.reset("h4")
