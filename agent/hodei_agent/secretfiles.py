"""Handing an attempt's secrets to its process: private files, stdin, or (if asked) env.

- `file` (the default): a private directory (mode 0700; on /dev/shm when there is one, so
  the values never reach a disk) with one file per secret (mode 0600), named by the spec's
  `as_file` or the secret's name; its path is `$HODEI_SECRETS_DIR`. Removed when the job
  ends.
- `stdin`: one JSON object on the process's stdin, `{"NAME": "value", ...}` keyed like the
  files; a value that is not UTF-8 is `{"base64": "..."}`.
- `both`: the two above.
- `as_env`: only for a secret whose spec entry asks, also that environment variable.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field

from hodei_agent.errors import JobStartError
from hodei_agent.redact import Redactor
from hodei_api.v1 import agent_pb2, jobs_pb2

SECRETS_DIR_ENV = "HODEI_SECRETS_DIR"
_SHM = "/dev/shm"
_PREFIX = "hodei-secrets-"


def is_secrets_dir(path: str) -> bool:
    """Whether `path` is a directory `JobSecrets` makes: named like one, in /dev/shm or the
    system temp dir, a real directory (no symlink) of this user.

    A path read back from a job (its environment, after the agent restarted) is checked with
    this before it is removed: the job could have put any path there."""
    if not path or os.path.dirname(path) not in (_SHM, tempfile.gettempdir()):
        return False
    if not os.path.basename(path).startswith(_PREFIX):
        return False
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid()


def file_name(ref: jobs_pb2.SecretRef) -> str:
    """The secret's file name (and stdin key): `as_file`, else its name without backend."""
    return ref.as_file or ref.name.rpartition(":")[2]


@dataclass
class Delivery:
    """What `prepare` set up for one attempt: stdin bytes, if any, and what to remove."""

    stdin: bytes | None = None
    directory: str | None = None
    env: dict[str, str] = field(default_factory=dict)

    def remove(self) -> None:
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None


class JobSecrets:
    """The secret values of one attempt, matched with the spec entries that name them."""

    def __init__(
        self, spec: jobs_pb2.JobSpec, values: Sequence[agent_pb2.SecretValue]
    ) -> None:
        self.refs = list(spec.secrets)
        self.delivery_mode = spec.secret_delivery or "file"
        self.values: dict[str, bytes] = {v.name: bytes(v.value) for v in values}
        self.redactor = Redactor(self.values)

    def __bool__(self) -> bool:
        return bool(self.refs)

    def prepare(self, env: dict[str, str]) -> Delivery:
        """Write the files, add the variables to `env`; JobStartError (naming, never
        showing, a secret) when a value is missing or can't be an environment variable."""
        delivery = Delivery()
        if not self.refs:
            return delivery
        for ref in self.refs:
            if ref.name not in self.values:
                raise JobStartError(f"secret {ref.name!r} was not sent with the job")
        try:
            if self.delivery_mode in ("file", "both"):
                delivery.directory = self._write_files()
                env[SECRETS_DIR_ENV] = delivery.directory
            if self.delivery_mode in ("stdin", "both"):
                delivery.stdin = self._stdin_json()
            for ref in self.refs:
                if ref.as_env:
                    env[ref.as_env] = self._env_value(ref)
        except BaseException:
            delivery.remove()
            raise
        return delivery

    def _write_files(self) -> str:
        base = _SHM if os.access(_SHM, os.W_OK | os.X_OK) else None
        directory = tempfile.mkdtemp(prefix=_PREFIX, dir=base)  # mode 0700
        try:
            for ref in self.refs:
                path = os.path.join(directory, file_name(ref))
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                with os.fdopen(fd, "wb") as file:
                    file.write(self.values[ref.name])
        except OSError as exc:
            shutil.rmtree(directory, ignore_errors=True)
            raise JobStartError(f"cannot write the secret files: {exc.strerror or exc}") from None
        return directory

    def _stdin_json(self) -> bytes:
        document: dict[str, object] = {}
        for ref in self.refs:
            value = self.values[ref.name]
            try:
                document[file_name(ref)] = value.decode("utf-8")
            except UnicodeDecodeError:
                document[file_name(ref)] = {"base64": base64.b64encode(value).decode()}
        return json.dumps(document).encode() + b"\n"

    def _env_value(self, ref: jobs_pb2.SecretRef) -> str:
        value = self.values[ref.name]
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            raise JobStartError(f"secret {ref.name!r} is not UTF-8 text, so it can't be the "
                                f"variable {ref.as_env}; use the file delivery") from None
        if "\x00" in text:
            raise JobStartError(f"secret {ref.name!r} contains a NUL byte, so it can't be the "
                                f"variable {ref.as_env}; use the file delivery")
        return text
