"""What to execute for a job spec: argv, environment, working directory, private temp dir."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from hodei_agent.errors import JobStartError
from hodei_api.v1 import jobs_pb2

# Variables the agent reads (token, server, ...) share this prefix; jobs get none of them
# except the ones describing the job itself.
AGENT_ENV_PREFIX = "HODEI_"

DEFAULT_INTERPRETER = "sh"
# Shells whose scripts get strict mode. dash has no pipefail, hence the probe in a subshell.
_STRICT_SHELLS = frozenset({"sh", "bash", "dash"})
_STRICT_PRELUDE = "set -eu; (set -o pipefail) 2>/dev/null && set -o pipefail\n"


@dataclass(frozen=True)
class Launch:
    """How to start one job attempt; `temp_dir` is private to it and removed at the end
    ("" when the attempt needs none: a command with its own working directory)."""

    argv: list[str]
    env: dict[str, str]
    cwd: str
    temp_dir: str


def job_environment(
    base: Mapping[str, str], spec_env: Mapping[str, str], job_id: str, attempt: int, worker_id: str
) -> dict[str, str]:
    """`base` without the agent's HODEI_* variables, plus the spec's env and the job's ids."""
    env = {key: value for key, value in base.items() if not key.startswith(AGENT_ENV_PREFIX)}
    env.update(spec_env)
    env["HODEI_JOB_ID"] = job_id
    env["HODEI_JOB_ATTEMPT"] = str(attempt)
    env["HODEI_WORKER_ID"] = worker_id
    return env


def remove_if_empty(path: str) -> bool:
    """Remove `path` if it holds nothing but empty directories (the usual end of a job).

    Cheap enough for the event loop; False when anything is left for `remove_temp_dir`.
    """
    try:
        os.rmdir(path)  # the usual case, with no listing of it first
        return True
    except OSError:
        pass
    try:
        with os.scandir(path) as entries:
            for entry in entries:
                if not entry.is_dir(follow_symlinks=False):
                    return False
                os.rmdir(entry.path)
        os.rmdir(path)
    except OSError:
        return False
    return True


def remove_temp_dir(path: str) -> None:
    """Remove a job's temp dir, including read-only parts a job may leave (Go's module
    cache, for one); blocking, so run it in a thread. Nothing outside it is ever changed:
    a temp dir already gone (removed by an earlier agent, say) is left at that."""
    if not path:
        return  # the job had none (it runs in a working directory of its own)
    root = os.path.abspath(path)

    def make_writable_and_retry(
        function: Callable[[str], object], failed: str, exc_info: Any
    ) -> None:
        if isinstance(exc_info[1], FileNotFoundError):
            return
        with contextlib.suppress(OSError):
            parent = os.path.dirname(failed)
            if os.path.abspath(failed) != root and not os.path.islink(parent):
                # Its directory, the temp dir or one inside it, may be read-only.
                os.chmod(parent, 0o700)
            if os.path.isdir(failed) and not os.path.islink(failed):
                os.chmod(failed, 0o700)
            function(failed)

    shutil.rmtree(path, onerror=make_writable_and_retry)


def _script_argv(spec: jobs_pb2.JobSpec, temp_dir: str) -> list[str]:
    try:
        interpreter = shlex.split(spec.interpreter or DEFAULT_INTERPRETER)
    except ValueError as exc:
        raise JobStartError(f"bad interpreter {spec.interpreter!r}: {exc}") from None
    if not interpreter:
        interpreter = [DEFAULT_INTERPRETER]
    body = spec.script
    if os.path.basename(interpreter[0]) in _STRICT_SHELLS:
        body = _STRICT_PRELUDE + body
    path = os.path.join(temp_dir, "script")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as script:
        script.write(body)
    return [*interpreter, path]


def temp_dir_prefix(job_id: str, attempt: int) -> str:
    """How the name of an attempt's temp dir (in the system's temp dir) begins."""
    safe_id = re.sub(r"[^A-Za-z0-9_.-]", "_", job_id)[:64]
    return f"hodei-{safe_id}-{attempt}-"


def prepare_launch(
    spec: jobs_pb2.JobSpec,
    job_id: str,
    attempt: int,
    worker_id: str,
    base_env: Mapping[str, str],
    spare_temp_dir: Callable[[], str] = str,
) -> Launch:
    """Create the job's private temp dir and decide argv, env and cwd.

    The temp dir holds a script's file and, for a job without a working directory, its
    working directory: a command's is the temp dir itself, a script's a `work` directory
    beside its file. A command with a working directory needs none (each directory made
    and removed is a file-system operation per job). `spare_temp_dir()`: an empty private
    temp dir left by a job that is over, to use instead of a new one ("" if none).
    Raises `JobStartError` (and leaves nothing behind) when the spec cannot run.
    """
    if bool(spec.command) == bool(spec.script):
        raise JobStartError("the spec must have exactly one of command or script")
    if spec.working_dir and not os.path.isdir(spec.working_dir):
        raise JobStartError(f"working directory {spec.working_dir!r} does not exist")
    env = job_environment(base_env, spec.env, job_id, attempt, worker_id)
    if spec.command and spec.working_dir:
        return Launch(argv=list(spec.command), env=env, cwd=spec.working_dir, temp_dir="")
    temp_dir = spare_temp_dir() or tempfile.mkdtemp(prefix=temp_dir_prefix(job_id, attempt))
    try:
        if spec.command:
            argv = list(spec.command)
        else:
            argv = _script_argv(spec, temp_dir)
        cwd = spec.working_dir
        if not cwd and spec.command:
            cwd = temp_dir
        elif not cwd:
            cwd = os.path.join(temp_dir, "work")
            os.mkdir(cwd, 0o700)
    except BaseException:
        remove_temp_dir(temp_dir)
        raise
    return Launch(argv=argv, env=env, cwd=cwd, temp_dir=temp_dir)
