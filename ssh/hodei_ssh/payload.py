"""The agent's payload: a wheelhouse built on the operator's side, so hosts need no internet.

It holds a wheel of the agent (the `hodei_agent` and `hodei_api` packages as installed here,
under the distribution name `hodei` so the agent reports its version), and the wheels of
grpcio, protobuf (at the versions installed here), what they need, and pip, for the host's
Python version and platform. Third-party wheels come from a cache directory, filled by
`pip download` (which reads pip's own cache and the configured index) once per Python
version and platform. Its version marker changes whenever any wheel does.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import importlib.metadata
import io
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

AGENT_PACKAGES = ("hodei_agent", "hodei_api")
THIRD_PARTY = ("grpcio", "protobuf")
_ZIP_DATE = (2020, 1, 1, 0, 0, 0)


class PayloadError(Exception):
    """The wheelhouse cannot be built; one line."""


@dataclass(frozen=True)
class Target:
    """What the host runs: Python X.Y, machine (uname -m), glibc version."""

    python: str
    machine: str
    glibc: str

    def platforms(self) -> list[str]:
        """pip --platform tags this host accepts (manylinux up to its glibc)."""
        major, _, minor = self.glibc.partition(".")
        if major != "2" or not minor.isdigit():
            raise PayloadError(f"glibc {self.glibc or '(none)'} is not supported (manylinux "
                               "wheels need glibc 2.17 or newer)")
        tags = [f"manylinux_2_{m}_{self.machine}" for m in range(17, int(minor) + 1)]
        return [*tags, f"manylinux2014_{self.machine}", "any"]

    @property
    def key(self) -> str:
        return f"cp{self.python.replace('.', '')}-{self.machine}-glibc{self.glibc}"


@dataclass(frozen=True)
class Wheelhouse:
    directory: Path
    files: tuple[Path, ...]
    marker: str


def default_cache() -> Path:
    explicit = os.environ.get("HODEI_WHEEL_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "hodei" / "wheels"


def _version() -> str:
    try:
        return importlib.metadata.version("hodei")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def agent_wheel(directory: Path) -> Path:
    """Write the agent's wheel (reproducible: same sources, same bytes) into `directory`."""
    version = _version()
    files: list[tuple[str, bytes]] = []
    for package in AGENT_PACKAGES:
        module = __import__(package)
        root = Path(module.__file__ or "").parent
        for path in sorted(root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                files.append((f"{package}/{path.relative_to(root).as_posix()}",
                              path.read_bytes()))
    info = f"hodei-{version}.dist-info"
    requires = "".join(f"Requires-Dist: {name}=={importlib.metadata.version(name)}\n"
                       for name in THIRD_PARTY)
    files.append((f"{info}/METADATA", (
        f"Metadata-Version: 2.1\nName: hodei\nVersion: {version}\n"
        f"Summary: Hodei worker agent\nRequires-Python: >=3.11\n{requires}").encode()))
    files.append((f"{info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: hodei\n"
                  b"Root-Is-Purelib: true\nTag: py3-none-any\n"))
    files.append((f"{info}/entry_points.txt",
                  b"[console_scripts]\nhodei-agent = hodei_agent.__main__:main\n"))
    record = "".join(_record_line(name, data) + "\n" for name, data in files)
    record += f"{info}/RECORD,,\n"
    files.append((f"{info}/RECORD", record.encode()))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as wheel:
        for name, data in files:
            entry = zipfile.ZipInfo(name, _ZIP_DATE)
            entry.external_attr = 0o644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            wheel.writestr(entry, data)
    path = directory / f"hodei-{version}-py3-none-any.whl"
    data = buffer.getvalue()
    if not path.exists() or path.read_bytes() != data:
        fd, temp = tempfile.mkstemp(dir=directory, prefix=".hodei-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.chmod(temp, 0o644)
            os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
    return path


def _download(target: Target, directory: Path) -> None:
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in THIRD_PARTY]
    argv = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
            "--only-binary=:all:", "--dest", str(directory), "--python-version", target.python,
            "--implementation", "cp"]
    for platform in target.platforms():
        argv += ["--platform", platform]
    argv += [*pins, "pip"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PayloadError(f"pip download failed: {exc}") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise PayloadError(f"cannot fetch the wheels of {', '.join(pins)} for Python "
                           f"{target.python} on {target.machine}: {last}")


def build(target: Target, cache: Path | None = None) -> Wheelhouse:
    """The wheelhouse for `target`, from the cache (filled on first use). Hosts bootstrapped
    at once build it one at a time (a lock file in the cache), the first filling it."""
    root = (cache or default_cache()) / target.key
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _build(target, root)


def _build(target: Target, root: Path) -> Wheelhouse:
    third = root / "third-party"
    done_file = third / ".complete"
    if not done_file.is_file():
        third.mkdir(parents=True, exist_ok=True)
        _download(target, third)
        done_file.write_text("\n".join(sorted(p.name for p in third.glob("*.whl"))))
    agent_dir = root / "agent"
    agent_dir.mkdir(parents=True, exist_ok=True)
    agent = agent_wheel(agent_dir)
    files = (agent, *sorted(third.glob("*.whl")))
    if not any(path.name.startswith("pip-") for path in files):
        raise PayloadError(f"the wheel cache {third} has no pip wheel; delete it to refetch")
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return Wheelhouse(root, files, f"{_version()}+{digest.hexdigest()[:16]}")
