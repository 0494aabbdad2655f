"""The agent's state directory: its identity, and per job attempt what a restarted agent needs
to re-attach to it (the job's output files, how far they were turned into chunks, its pid).

```
STATE_DIR/                 0700
  identity.json            0600  worker id, credential, heartbeat interval, lease
  lock                     held (flock) by the agent using the directory
  lease                    the wall-clock time after which the jobs must be stopped
  watchdog.pid             the lease watchdog (hodei_agent.watchdog)
  jobs/<job>.<attempt>.*   one set of files per attempt, removed once the server
                           acknowledged the result (flat: a directory per job would cost
                           two more file-system operations per job), or recycled for
                           the next job if it printed nothing and left no process (see
                           `JobFiles.recycle`):
    .meta                  job, attempt, pid and its start time, cgroup, start, timeout,
                           temp dir; written before the job is started (pid 0), then with
                           its pid
    .stdout, .stderr       what the job wrote (the job writes the files itself)
    .chunks                one record per chunk made: seq, stream, length (ChunkJournal)
    .acked                 the highest seq the server acknowledged
    .status                the job's exit status, written by its keeper when it ends
                           with no agent there, or when its agent goes away before the
                           server acknowledged the result (the keeper holds it till then)
    .fenced                present when the lease watchdog stopped the job
```

Without `--state-dir` the agent uses a private temporary directory, removed when it exits:
the same code path, but nothing outlives the agent.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from hodei_agent.errors import AgentError
from hodei_agent.journal import (
    ACKED_SUFFIX,
    CHUNKS_SUFFIX,
    RECORD,
    ChunkJournal,
    Journal,
    JournalEntry,
)
from hodei_agent.procgroup import start_ticks
from hodei_agent.watchdog import (
    FENCED_SUFFIX,
    JOBS_DIR,
    LEASE_FILE,
    META_SUFFIX,
    STDOUT_SUFFIX,
)
from hodei_api.v1 import logs_pb2

logger = logging.getLogger(__name__)

IDENTITY_FILE = "identity.json"
_LOCK = "lock"
STDERR_SUFFIX = ".stderr"
STATUS_SUFFIX = ".status"
JOB_SUFFIXES = (META_SUFFIX, STDOUT_SUFFIX, STDERR_SUFFIX, CHUNKS_SUFFIX, ACKED_SUFFIX,
                STATUS_SUFFIX, FENCED_SUFFIX)
STREAMS = (logs_pb2.LOG_STREAM_STDOUT, logs_pb2.LOG_STREAM_STDERR)


@dataclass(frozen=True)
class Identity:
    """Who the server says this agent is (what `Register` returned)."""

    worker_id: str
    credential: str
    heartbeat_interval: float
    lease: float


@dataclass(frozen=True)
class JobMeta:
    """What a restarted agent must know about a running attempt."""

    job_id: str
    attempt: int
    pid: int
    # Field 22 of /proc/<pid>/stat: with the pid, names the process across pid reuse.
    start_ticks: int
    started_at: float  # wall clock
    timeout_seconds: float
    temp_dir: str
    # The attempt was given secrets: a restarted agent, which does not know them, can't
    # redact its output, so it stops it rather than re-attach (and removes their directory).
    has_secrets: bool = False
    secrets_dir: str = ""
    # The job's cgroup ("" if it has none): every process it started, whatever its session.
    cgroup: str = ""


# When a process started (clock ticks since boot), None if there is no such process: with
# the pid, it names the process across pid reuse.
process_start_ticks = start_ticks


def _write_private(path: Path, data: bytes) -> None:
    """Write `path` (mode 0600) atomically: a reader sees the old or the new content."""
    temp = path.with_name(path.name + ".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(temp, path)


class JobFiles:
    """The files of one job attempt: `<prefix>.meta`, `<prefix>.stdout`, ..."""

    def __init__(self, prefix: Path) -> None:
        self.prefix = str(prefix)
        self.journal: ChunkJournal | None = None
        self._paths: dict[str, Path] = {}
        # The `.meta` file stays open from its first write to the attempt's end: each later
        # version is written over it in place (see `write_meta`).
        self._meta_fd: int | None = None
        self._meta_length = 0
        # Called when the files go: tells the job's keeper its end is recorded elsewhere.
        self.forget: Callable[[], None] | None = None
        # Nothing of the job is left (its cgroup is gone): its files and empty temp dir
        # (kept here meanwhile) may serve another job.
        self.reusable = False
        self.temp_dir = ""

    def _path(self, suffix: str) -> Path:
        path = self._paths.get(suffix)
        if path is None:
            path = self._paths[suffix] = Path(self.prefix + suffix)
        return path

    def output_path(self, stream: logs_pb2.LogStream) -> Path:
        return self._path(STDOUT_SUFFIX if stream == logs_pb2.LOG_STREAM_STDOUT
                          else STDERR_SUFFIX)

    @property
    def status_path(self) -> Path:
        return self._path(STATUS_SUFFIX)

    @property
    def fenced_path(self) -> Path:
        return self._path(FENCED_SUFFIX)

    def create_outputs(self) -> tuple[int, int]:
        """Create the (empty) output files; returns write-only descriptors for the job."""
        fds = []
        try:
            for stream in STREAMS:
                fds.append(
                    os.open(self.output_path(stream), os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                            0o600)
                )
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        return fds[0], fds[1]

    def open_output(self, stream: logs_pb2.LogStream) -> int:
        """A read-only descriptor on one output file (created empty if missing)."""
        return os.open(self.output_path(stream), os.O_RDONLY | os.O_CREAT, 0o600)

    def open_journal(self) -> ChunkJournal:
        self.journal = ChunkJournal(self.prefix)
        return self.journal

    def write_meta(self, meta: JobMeta | dict[str, str]) -> None:
        """Record `meta` over the last version, in place: never truncated (a journal
        transaction on ext4), a shorter version padded with spaces, which JSON ignores.
        Nor renamed into place: a kill in the middle of this small write leaves a job that
        is not re-attached, like a kill between the spawn and this write."""
        data = json.dumps(asdict(meta) if isinstance(meta, JobMeta) else meta).encode()
        if self._meta_fd is None:
            self._meta_fd = os.open(self._path(META_SUFFIX),
                                    os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            self._meta_length = 0
        os.pwrite(self._meta_fd, data.ljust(self._meta_length), 0)
        self._meta_length = max(self._meta_length, len(data))

    def close(self) -> None:
        """Let go of the open `.meta` (the files stay)."""
        if self._meta_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._meta_fd)
            self._meta_fd = None

    def read_meta(self) -> JobMeta | None:
        try:
            return JobMeta(**json.loads(self._path(META_SUFFIX).read_bytes()))
        except (OSError, ValueError, TypeError):
            return None

    def read_journal(self) -> Journal:
        try:
            raw = self._path(CHUNKS_SUFFIX).read_bytes()
        except FileNotFoundError:
            raw = b""
        # A record cut short by a kill is not a chunk that was ever sent.
        usable = len(raw) - len(raw) % RECORD.size
        offsets = dict.fromkeys(STREAMS, 0)
        entries = []
        for seq, stream, length in RECORD.iter_unpack(raw[:usable]):
            entries.append(JournalEntry(seq, stream, offsets[stream], length))
            offsets[stream] += length
        try:
            acked = int.from_bytes(self._path(ACKED_SUFFIX).read_bytes()[:8], "little")
        except FileNotFoundError:
            acked = 0
        return Journal(entries, acked, offsets)

    def read_status(self) -> int | None:
        """The exit status the job's keeper recorded, if it got to record one."""
        try:
            return int(self.status_path.read_text().strip())
        except (OSError, ValueError):
            return None

    def keep_temp_dir(self, path: str) -> bool:
        """Keep the job's temp dir for the next job if these files may serve it: when it is
        empty and still a private directory of this user (mode 0700, not a symlink)."""
        try:
            info = os.lstat(path)
            if not (self.reusable and stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid()
                    and stat.S_IMODE(info.st_mode) == 0o700):
                return False
            with os.scandir(path) as entries:
                if next(entries, None) is not None:
                    return False
        except OSError:
            return False
        self.temp_dir = path
        return True

    def take_temp_dir(self) -> str:
        """The temp dir kept for the next job ("" if none); it is the taker's now."""
        temp_dir, self.temp_dir = self.temp_dir, ""
        return temp_dir

    def recycle(self) -> bool:
        """Make these files those of no job, ready for the next: the meta names only the temp
        dir kept (no job, to a restarted agent or the watchdog), the output files stay empty.
        False (nothing done) unless the job ended whole and printed nothing."""
        if not self.reusable or self._meta_fd is None or (self.journal and self.journal.used):
            return False
        self.remove(keep=(META_SUFFIX, STDOUT_SUFFIX, STDERR_SUFFIX))
        self.write_meta({"temp_dir": self.temp_dir})
        self.reusable = False
        return True

    def _remove_spare_temp_dir(self) -> None:
        """Remove the temp dir kept for a next job (named in the meta, if found on disk)."""
        temp_dir = self.temp_dir
        if not temp_dir and self._meta_fd is None:
            with contextlib.suppress(OSError, ValueError, AttributeError):
                spare = json.loads(self._path(META_SUFFIX).read_bytes())
                if list(spare) == ["temp_dir"]:
                    temp_dir = str(spare["temp_dir"])
        if temp_dir and os.path.basename(temp_dir).startswith("hodei-"):
            with contextlib.suppress(OSError):
                os.rmdir(temp_dir)  # empty when kept, and no job had it since
        self.temp_dir = ""

    def remove(self, keep: tuple[str, ...] = ()) -> None:
        if self.forget is not None:
            self.forget()
            self.forget = None
        if not keep:
            self._remove_spare_temp_dir()
            self.close()
        if self.journal is not None:
            self.journal.close()
            self.journal = None
        for suffix in JOB_SUFFIXES:
            if suffix in keep:
                continue
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.prefix + suffix)


def _safe(job_id: str) -> str:
    # No dot: a job's files are <safe id>.<attempt>.<what>.
    return re.sub(r"[^A-Za-z0-9_-]", "_", job_id)[:64]


class StateDir:
    """The agent's state directory (`persistent`) or a private temporary one."""

    def __init__(self, path: Path, *, persistent: bool) -> None:
        self.path = path
        self.persistent = persistent
        self.jobs = path / JOBS_DIR
        self.jobs.mkdir(mode=0o700, exist_ok=True)
        self._lock: int | None = None

    @classmethod
    def open(cls, path: Path | None) -> StateDir:
        """The state dir at `path` (created 0700, or made so), or a temporary one if None."""
        if path is None:
            return cls(Path(tempfile.mkdtemp(prefix="hodei-agent-")), persistent=False)
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        if path.stat().st_uid != os.getuid():
            raise PermissionError(f"state dir {path} belongs to another user")
        os.chmod(path, 0o700)
        state = cls(path, persistent=True)
        # Two agents on one state dir would both claim its jobs.
        lock = os.open(path / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock)
            raise AgentError(f"another agent is using the state dir {path}") from None
        state._lock = lock
        return state

    def close(self) -> None:
        """Release a persistent state dir; remove a temporary one."""
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None
        if not self.persistent:
            shutil.rmtree(self.path, ignore_errors=True)

    # --- identity ---------------------------------------------------------------------------

    def load_identity(self) -> Identity | None:
        if not self.persistent:
            return None
        try:
            return Identity(**json.loads((self.path / IDENTITY_FILE).read_bytes()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            logger.warning("ignoring unreadable %s: %s", self.path / IDENTITY_FILE, exc)
            return None

    def save_identity(self, identity: Identity) -> None:
        if self.persistent:
            _write_private(self.path / IDENTITY_FILE, json.dumps(asdict(identity)).encode())

    def forget_identity(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.path / IDENTITY_FILE).unlink()

    # --- lease ------------------------------------------------------------------------------

    @property
    def lease_path(self) -> Path:
        return self.path / LEASE_FILE

    def renew_lease(self, deadline: float) -> None:
        """Record the wall-clock time past which no job may run without word from a server."""
        _write_private(self.lease_path, b"%.3f\n" % deadline)

    def lease_deadline(self) -> float | None:
        """The deadline last recorded (by this or a previous process of the agent)."""
        try:
            return float(self.lease_path.read_text())
        except (OSError, ValueError):
            return None

    def drop_lease(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.lease_path.unlink()

    # --- jobs -------------------------------------------------------------------------------

    def job_files(self, job_id: str, attempt: int) -> JobFiles:
        return JobFiles(self.jobs / f"{_safe(job_id)}.{attempt}")

    def new_job(self, job_id: str, attempt: int, taken: set[str] | None = None) -> JobFiles:
        """`taken`: prefixes in use (by recycled files), which the new one must not be."""
        files = self.job_files(job_id, attempt)
        while taken and files.prefix in taken:
            files = JobFiles(Path(files.prefix + "_"))
        if os.path.exists(files.prefix + META_SUFFIX):  # left by an attempt whose record is gone
            files.remove()
        return files

    def existing_jobs(self) -> list[JobFiles]:
        """Every attempt with files here; one whose pid was never recorded has no `.meta`
        and is listed too (its other files are to be removed)."""
        prefixes = {str(path).rsplit(".", 1)[0] for path in self.jobs.iterdir()}
        return [JobFiles(Path(prefix)) for prefix in sorted(prefixes)]
