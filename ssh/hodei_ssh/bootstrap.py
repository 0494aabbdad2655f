"""Preflight, bootstrap and removal of the agent on one host, over one SSH connection.

What bootstrap leaves on the host, all under ~/.hodei (and a systemd unit where systemd
runs): `wheelhouse/` (uploaded over SFTP), `venv/` (installed with `pip --no-index`),
`version` (the payload's marker: a re-run with the same payload and a running agent does
nothing), `agent.json` (the agent's argv, a JSON list: no shell ever parses it),
`launch.py`, `token` (0600, written from SSH stdin, never argv), `state/` (the agent's
state dir) and, without systemd, `supervisor.pid`/`agent.pid`/`agent.log`. `remove`
stops the agent and deletes all of it.
"""

from __future__ import annotations

import asyncio
import json
import posixpath
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hodei_ssh import payload
from hodei_ssh.errors import HostError
from hodei_ssh.quoting import script, shell
from hodei_ssh.registry import Host

BASE = ".hodei"
MIN_DISK_KB = 200 * 1024
STOP_GRACE = 20

# Each value on a line of its own: key=value.
PREFLIGHT = r"""
echo "os=$(uname -s)"
echo "arch=$(uname -m)"
echo "home=$HOME"
py=""
for p in python3.13 python3.12 python3.11 python3; do
  if command -v "$p" >/dev/null 2>&1 &&
     "$p" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    py=$(command -v "$p"); break
  fi
done
echo "python=$py"
old=""
for p in python3 python; do
  if command -v "$p" >/dev/null 2>&1; then
    old=$("$p" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null); break
  fi
done
echo "python_found=$old"
if [ -n "$py" ]; then
  "$py" -c 'import os, sys, venv
print("python_version=%d.%d" % sys.version_info[:2])
print("glibc=" + (os.confstr("CS_GNU_LIBC_VERSION") or "").replace("glibc ", ""))'
fi
set -- $(df -Pk "$HOME" 2>/dev/null | tail -n 1)
echo "disk_kb=${4:-0}"
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  echo "systemd=yes"
else
  echo "systemd=no"
fi
if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  echo "sudo=yes"
else
  echo "sudo=no"
fi
echo "marker=$(cat "$HOME/.hodei/version" 2>/dev/null)"
running=no
pidfile="$HOME/.hodei/supervisor.pid"
if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  running=yes
elif command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ] &&
     { systemctl --user is-active --quiet hodei-agent.service 2>/dev/null ||
       systemctl is-active --quiet hodei-agent.service 2>/dev/null; }; then
  running=yes
fi
echo "running=$running"
"""

# $1: marker. Installs the uploaded wheelhouse into a fresh private venv.
INSTALL = r"""
set -eu
cd "$HOME/.hodei"
py=$(cat python)
rm -rf venv
"$py" -m venv --without-pip venv
pipwhl=$(ls wheelhouse/pip-*.whl | head -n 1)
venv/bin/python "$pipwhl/pip" install --quiet --no-index --no-deps \
  --disable-pip-version-check --no-cache-dir wheelhouse/*.whl
venv/bin/python -c 'import grpc, google.protobuf, hodei_agent'
printf '%s\n' "$1" > version
"""

# Writes stdin to ~/.hodei/token, 0600 from its creation on.
WRITE_TOKEN = r"""
set -eu
umask 077
cd "$HOME/.hodei"
cat > token.new
mv -f token.new token
"""

START_PROCESS = r"""
set -eu
cd "$HOME/.hodei"
setsid nohup venv/bin/python launch.py --supervise </dev/null >>agent.log 2>&1 &
i=0
while [ ! -s supervisor.pid ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
kill -0 "$(cat supervisor.pid)"
"""

# $1: grace seconds. Stops the supervisor (which drains the agent), then what is left.
STOP = r"""
cd "$HOME/.hodei" 2>/dev/null || exit 0
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl --user disable --now hodei-agent.service >/dev/null 2>&1 || true
  if [ -f system-unit ] && command -v sudo >/dev/null 2>&1; then
    sudo -n systemctl disable --now hodei-agent.service >/dev/null 2>&1 || true
  fi
fi
for f in supervisor.pid agent.pid; do
  [ -f "$f" ] || continue
  pid=$(cat "$f")
  kill -TERM "$pid" 2>/dev/null || continue
  i=0
  while kill -0 "$pid" 2>/dev/null && [ $i -lt $(($1 * 10)) ]; do sleep 0.1; i=$((i + 1)); done
  kill -KILL "$pid" 2>/dev/null || true
done
rm -f supervisor.pid agent.pid
"""

# Deletes everything bootstrap made.
UNINSTALL = r"""
set -eu
if [ -f "$HOME/.config/systemd/user/hodei-agent.service" ]; then
  rm -f "$HOME/.config/systemd/user/hodei-agent.service"
  systemctl --user daemon-reload >/dev/null 2>&1 || true
fi
if [ -f "$HOME/.hodei/system-unit" ]; then
  sudo -n rm -f /etc/systemd/system/hodei-agent.service
  sudo -n systemctl daemon-reload >/dev/null 2>&1 || true
fi
rm -rf "$HOME/.hodei"
"""

# Runs the agent from agent.json: exec'd by systemd, or looped (`--supervise`) by itself
# where there is no systemd, so that an agent that is killed starts again on its state dir.
LAUNCHER = '''\
"""Starts the Hodei agent as agent.json says (written by `hodeictl host bootstrap`)."""
import json, os, signal, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
argv = [os.path.join(HERE, "venv", "bin", "python"), "-m", "hodei_agent"]
with open(os.path.join(HERE, "agent.json")) as f:
    argv += json.load(f)

if "--supervise" not in sys.argv:
    os.execv(argv[0], argv)


def write(name, pid):
    path = os.path.join(HERE, name)
    with open(path + ".tmp", "w") as f:
        f.write(str(pid))
    os.replace(path + ".tmp", path)


stopping = False
child = None


def stop(signum, frame):
    global stopping
    stopping = True
    if child is not None and child.poll() is None:
        child.send_signal(signum)


signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
write("supervisor.pid", os.getpid())
quick = 0
while not stopping:
    started = time.monotonic()
    child = subprocess.Popen(argv, cwd=HERE, stdin=subprocess.DEVNULL)
    write("agent.pid", child.pid)
    code = child.wait()
    if stopping or code == 0:
        break
    # Killed or crashed: start it again on its state dir (quick deaths back off).
    quick = quick + 1 if time.monotonic() - started < 5 else 0
    print(f"hodei: agent exited with {code}; restarting", file=sys.stderr, flush=True)
    time.sleep(min(30, 0.5 * 2 ** quick) if quick > 1 else 0.5)
for name in ("agent.pid", "supervisor.pid"):
    try:
        os.unlink(os.path.join(HERE, name))
    except OSError:
        pass
'''

UNIT = """\
[Unit]
Description=Hodei worker agent
After=network-online.target

[Service]
ExecStart={python} {launcher}
Restart=on-failure
RestartSec=1
KillMode=mixed
TimeoutStopSec=60
{user}
[Install]
WantedBy={wanted_by}
"""


@dataclass(frozen=True)
class Facts:
    """What preflight learnt of a host."""

    values: dict[str, str]

    def __getitem__(self, key: str) -> str:
        return self.values.get(key, "")

    @property
    def target(self) -> payload.Target:
        return payload.Target(self["python_version"], self["arch"], self["glibc"])

    def summary(self) -> str:
        python = (f"Python {self['python_version']} ({self['python']})" if self["python"]
                  else "no Python >= 3.11")
        disk = int(self["disk_kb"] or 0) // 1024
        return (f"{self['os']} {self['arch']}, {python}, {disk} MiB free, systemd: "
                f"{self['systemd']}, sudo -n: {self['sudo']}")


@dataclass(frozen=True)
class AgentSettings:
    """How the agent on a host is to run."""

    server: str
    worker_name: str
    labels: dict[str, str]
    slots: int = 4
    insecure: bool = False
    ca_cert: str = ""
    # "auto": systemd where it runs (system with sudo when the host allows it, else --user),
    # else a detached supervised process; or "systemd-system", "systemd-user", "process".
    service: str = "auto"


Progress = Callable[[str, str], None]


def _no_progress(host: str, step: str) -> None:
    pass


async def preflight(conn: Any, host: Host) -> Facts:
    result = await _run(conn, host, "preflight", script(PREFLIGHT))
    values = {}
    for line in str(result.stdout).splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    return Facts(values)


def require_usable(host: Host, facts: Facts) -> None:
    """One line for a host the agent cannot run on."""
    if facts["os"] != "Linux":
        raise HostError(host.name, "preflight", f"{facts['os'] or 'unknown OS'} is not "
                        "supported (Linux only)")
    if not facts["python"]:
        found = facts["python_found"]
        raise HostError(host.name, "preflight", (
            f"Python {found} found, 3.11 or newer is needed" if found else
            "no Python found on the PATH; install python3 (3.11 or newer)"))
    if int(facts["disk_kb"] or 0) < MIN_DISK_KB:
        raise HostError(host.name, "preflight", f"only {int(facts['disk_kb'] or 0) // 1024} "
                        f"MiB free in {facts['home']}; {MIN_DISK_KB // 1024} MiB needed")


async def _run(conn: Any, host: Host, step: str, command: str, **kw: Any) -> Any:
    from hodei_ssh.remote import run

    return await run(conn, host.name, step, command, **kw)


def agent_argv(settings: AgentSettings, home: str) -> list[str]:
    base = posixpath.join(home, BASE)
    argv = ["--server", settings.server, "--name", settings.worker_name,
            "--slots", str(settings.slots), "--state-dir", posixpath.join(base, "state"),
            "--token-file", posixpath.join(base, "token")]
    if settings.ca_cert:
        argv += ["--ca-cert", posixpath.join(base, "ca.crt")]
    elif settings.insecure:
        argv.append("--insecure")
    for key, value in sorted(settings.labels.items()):
        argv += ["--label", f"{key}={value}"]
    return argv


def _service(settings: AgentSettings, facts: Facts, host: Host) -> str:
    if settings.service != "auto":
        return settings.service
    if facts["systemd"] != "yes":
        return "process"
    return "systemd-system" if host.sudo and facts["sudo"] == "yes" else "systemd-user"


def _systemd_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%") + '"'


async def _upload(conn: Any, host: Host, home: str, wheelhouse: payload.Wheelhouse,
                  files: dict[str, bytes]) -> None:
    base = posixpath.join(home, BASE)
    try:
        async with conn.start_sftp_client() as sftp:
            for directory in (base, posixpath.join(base, "wheelhouse")):
                if not await sftp.isdir(directory):
                    await sftp.mkdir(directory)
            await sftp.chmod(base, 0o700)
            present = set(await sftp.listdir(posixpath.join(base, "wheelhouse")))
            wanted = {path.name for path in wheelhouse.files}
            for name in present - wanted - {".", ".."}:
                await sftp.remove(posixpath.join(base, "wheelhouse", name))
            for path in wheelhouse.files:
                remote = posixpath.join(base, "wheelhouse", path.name)
                if path.name in present and (await sftp.stat(remote)).size == \
                        path.stat().st_size and not path.name.startswith("hodei-"):
                    continue
                await sftp.put(str(path), remote)
            for name, data in files.items():
                async with sftp.open(posixpath.join(base, name), "wb") as remote_file:
                    await remote_file.write(data)
    except (OSError, Exception) as exc:
        if isinstance(exc, HostError):
            raise
        raise HostError(host.name, "upload", str(exc).strip().splitlines()[0]
                        if str(exc).strip() else type(exc).__name__) from None


async def bootstrap(conn: Any, host: Host, settings: AgentSettings, *,
                    token: Callable[[], Any], cache: Any = None,
                    progress: Progress = _no_progress, ca_cert_data: bytes = b"",
                    ) -> tuple[str, str, bool]:
    """Install and start the agent; (marker, service, changed). A re-run with the same
    payload on a host whose agent runs changes nothing. `token()` is awaited only when an
    agent is to be (re)started. On failure, no agent is left half-started."""
    progress(host.name, "preflight")
    facts = await preflight(conn, host)
    require_usable(host, facts)
    progress(host.name, "wheelhouse")
    try:
        wheelhouse = await asyncio.to_thread(payload.build, facts.target, cache)
    except payload.PayloadError as exc:
        raise HostError(host.name, "wheelhouse", str(exc)) from None
    service = _service(settings, facts, host)
    home = facts["home"]
    argv = agent_argv(settings, home)
    agent_json = json.dumps(argv).encode()
    if facts["marker"] == wheelhouse.marker and facts["running"] == "yes":
        current = await _read_remote(conn, posixpath.join(home, BASE, "agent.json"))
        if current == agent_json:
            progress(host.name, "up to date")
            return wheelhouse.marker, service, False
    progress(host.name, "stop")
    await _run(conn, host, "stop", script(STOP, str(STOP_GRACE)))
    files = {"agent.json": agent_json, "launch.py": LAUNCHER.encode(),
             "python": (facts["python"] + "\n").encode()}
    if settings.ca_cert:
        files["ca.crt"] = ca_cert_data
    progress(host.name, "upload")
    await _upload(conn, host, home, wheelhouse, files)
    try:
        if facts["marker"] != wheelhouse.marker:
            progress(host.name, "install")
            await _run(conn, host, "install", script(INSTALL, wheelhouse.marker), timeout=600)
        progress(host.name, "token")
        await _run(conn, host, "token", script(WRITE_TOKEN), stdin=str(await token()) + "\n")
        progress(host.name, f"start ({service})")
        await _start(conn, host, home, service)
    except BaseException:
        # Leave no half-started agent behind.
        await asyncio.shield(_stop_quietly(conn, host))
        raise
    progress(host.name, "started")
    return wheelhouse.marker, service, True


async def _stop_quietly(conn: Any, host: Host) -> None:
    try:
        await _run(conn, host, "stop", script(STOP, "5"), check=False)
    except HostError:
        pass


async def _read_remote(conn: Any, path: str) -> bytes | None:
    try:
        async with conn.start_sftp_client() as sftp, sftp.open(path, "rb") as file:
            data: bytes = await file.read()
            return data
    except Exception:
        return None


async def _start(conn: Any, host: Host, home: str, service: str) -> None:
    base = posixpath.join(home, BASE)
    launcher = posixpath.join(base, "launch.py")
    python = posixpath.join(base, "venv", "bin", "python")
    if service == "process":
        await _run(conn, host, "start", script(START_PROCESS))
        return
    if service == "systemd-user":
        unit = UNIT.format(python=_systemd_quote(python), launcher=_systemd_quote(launcher),
                           user="", wanted_by="default.target")
        unit_dir = posixpath.join(home, ".config", "systemd", "user")
        await _run(conn, host, "start", shell("mkdir", "-p", unit_dir))
        await _run(conn, host, "start", script('cat > "$1"', posixpath.join(
            unit_dir, "hodei-agent.service")), stdin=unit)
        await _run(conn, host, "start", script(
            'loginctl enable-linger "$(id -un)" 2>/dev/null || true\n'
            "systemctl --user daemon-reload && "
            "systemctl --user enable --now hodei-agent.service"))
        return
    if service == "systemd-system":
        unit = UNIT.format(python=_systemd_quote(python), launcher=_systemd_quote(launcher),
                           user=f"User={host.username}\n", wanted_by="multi-user.target")
        await _run(conn, host, "start", script(
            'sudo -n tee /etc/systemd/system/hodei-agent.service >/dev/null && '
            'touch "$HOME/.hodei/system-unit" && sudo -n systemctl daemon-reload && '
            'sudo -n systemctl enable --now hodei-agent.service'), stdin=unit)
        return
    raise HostError(host.name, "start", f"unknown service kind {service!r}")


async def remove(conn: Any, host: Host) -> None:
    """Stop the agent (it drains) and delete everything bootstrap made."""
    await _run(conn, host, "stop", script(STOP, str(STOP_GRACE)))
    await _run(conn, host, "uninstall", script(UNINSTALL))
