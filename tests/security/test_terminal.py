"""Nothing a job or a server sends can drive the terminal hodeictl prints to.

On a terminal (a real pty here), escape sequences in job output and in server strings are
shown in caret notation; into a pipe, job output stays byte for byte what the job wrote.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import pty
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest
from google.protobuf import timestamp_pb2

from hodei_api.v1 import jobs_pb2, workers_pb2
from hodeictl import output, views
from hodeictl.follow import exit_status
from hodeictl.terminal import StreamSanitizer, sanitize
from tests.e2e.harness import ServerProcess, hodeictl_argv
from tests.security.hostile_harness import (  # noqa: F401  (fixtures)
    module_database_url_fixture,
    shared_server_fixture,
)

pytestmark = pytest.mark.e2e

# What a hostile job or server would like a terminal to do.
ATTACKS = {
    "clear screen": "\x1b[2J\x1b[H",
    "cursor up, erase line": "\x1b[1A\x1b[2K",
    "window title (OSC 0)": "\x1b]0;pwned\x07",
    "hyperlink (OSC 8)": "\x1b]8;;https://evil.example/\x1b\\click\x1b]8;;\x1b\\",
    "DCS": "\x1bPq#0;2;0;0;0\x1b\\",
    "C1 CSI": "\x9b2J",
    "C1 OSC": "\x9d0;pwned\x9c",
    "lone ESC": "\x1b",
    "carriage-return overwrite": "rm -rf /\rls -la    ",
    "backspace": "safe\x08\x08\x08\x08evil",
    "bell": "\x07",
    "colour (SGR)": "\x1b[31mred\x1b[0m",
    "RTL override": "abc\u202edcba",
    "rich markup": "[bold red]markup[/bold red]",
}
# Sequences whose presence on the terminal would mean the attack got through.
LIVE = ("\x1b[", "\x1b]", "\x1bP", "\x9b", "\x9d", "\x07", "\x08", "\u202e")


def without_rich_colours(text: str) -> str:
    """The text less the SGR sequences rich itself writes (bold headers, state colours)."""
    return re.sub(r"\x1b\[[0-9;]*m", "", text).replace("\r\n", "\n")


def assert_inert(text: str) -> None:
    for sequence in LIVE:
        assert sequence not in text, (sequence, text)
    for index, char in enumerate(text):
        if char == "\r":
            assert text[index + 1: index + 2] == "\n", text
        elif char == "\x1b":
            raise AssertionError(f"raw ESC at {index}: {text!r}")


@pytest.mark.parametrize("name", list(ATTACKS))
def test_sanitize_makes_every_attack_visible_and_inert(name: str) -> None:
    shown = sanitize(ATTACKS[name])
    assert_inert(shown)
    if "\x1b" in ATTACKS[name]:
        assert "^[" in shown


def test_sanitize_keeps_newlines_tabs_and_crlf() -> None:
    assert sanitize("a\tb\nc\r\n") == "a\tb\nc\r\n"
    assert sanitize("a\nb\tc", single_line=True) == "a^Jb^Ic"
    assert sanitize("caf\u00e9 \u65e5\u672c \u05e9\u05dc\u05d5\u05dd") == \
        "caf\u00e9 \u65e5\u672c \u05e9\u05dc\u05d5\u05dd"


def test_stream_sanitizer_across_pieces() -> None:
    s = StreamSanitizer()
    euro = "\u20ac".encode()
    pieces = [b"a" + euro[:1], euro[1:] + b"\r", b"\nb\x1b", b"[2J\r", b"x\xff"]
    shown = "".join(s.feed(p) for p in pieces) + s.flush()
    assert shown == "a\u20ac\r\nb^[[2J^Mx\\xff"
    s = StreamSanitizer()
    assert s.feed(b"end\r") + s.flush() == "end^M"


@contextlib.contextmanager
def stdout_on_a_pty() -> Iterator[int]:
    """Point sys.stdout (and stderr) at a pty for the block; yields the master fd."""
    master, slave = pty.openpty()
    tty = io.TextIOWrapper(io.FileIO(slave, "w", closefd=True), encoding="utf-8",
                           write_through=True)
    saved = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = tty
    try:
        yield master
    finally:
        sys.stdout, sys.stderr = saved
        tty.close()


def drain(master: int) -> str:
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError as exc:
            if exc.errno == errno.EIO:
                break
            raise
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return b"".join(chunks).decode("utf-8", "replace")


def _hostile_job(text: str) -> jobs_pb2.Job:
    stamp = timestamp_pb2.Timestamp(seconds=1_700_000_000)
    attempt = jobs_pb2.JobAttempt(attempt=1, worker_id=text, reason=text,
                                  state=jobs_pb2.JOB_STATE_FAILED, started_at=stamp)
    return jobs_pb2.Job(
        id="3f2b1c4e-0000-4000-8000-000000000000", state=jobs_pb2.JOB_STATE_FAILED,
        reason=text, worker_id=text, created_at=stamp, attempts=[attempt],
        spec=jobs_pb2.JobSpec(name=text, command=["echo", text], env={"K": text},
                              labels={"k": text}, selector={"s": text}, working_dir=text),
    )


def test_server_strings_on_a_terminal_are_inert() -> None:
    """What a hostile (or older, less strict) server could send: shown, never obeyed."""
    text = "".join(ATTACKS.values())
    worker = workers_pb2.Worker(id=text, name=text, hostname=text, labels={"k": text},
                                state=workers_pb2.WORKER_STATE_READY)
    with stdout_on_a_pty() as master:
        views.print_jobs([_hostile_job(text)])
        views.print_job(_hostile_job(text))
        views.print_workers([worker])
        output.print_pairs_table(("NAME", "ERROR"), [(text, text)])
        output.print_json(output.job_to_dict(_hostile_job(text)))
        output.note(f"Job x failed: {text}")
        output.note(exit_status(_hostile_job(text))[1] or "")
    shown = drain(master)
    assert "\x1b[31mred" not in shown  # the job's colour is not obeyed ...
    assert_inert(without_rich_colours(shown))  # ... and nothing else gets through
    assert "^[[2J" in shown and "<U+009B>2J" in shown and "<U+202E>" in shown
    assert "[bold red]markup" in shown  # printed, not read as markup


def run_on_pty(server: ServerProcess, *args: str) -> tuple[int, str]:
    """hodeictl with its stdout on a pty (stderr piped): exit code and what the pty showed."""
    master, slave = pty.openpty()
    env = {**os.environ, "HODEI_SERVER": server.address, "HODEI_TOKEN": server.token,
           "COLUMNS": "400"}
    proc = subprocess.Popen([*hodeictl_argv(), *args], env=env, stdout=slave,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    os.close(slave)
    shown = drain(master)
    proc.wait(timeout=120)
    return proc.returncode, shown


def test_job_output_and_tables_on_a_pty_are_inert(shared_server: ServerProcess) -> None:
    attacks = list(ATTACKS.values())
    script = "".join(attacks)
    argv = ["job", "run", "-s", "provider=local", "--name", "[bold]x[/bold]", "--",
            "printf", "%s\\n", *attacks]
    code, shown = run_on_pty(shared_server, *argv)
    assert code == 0, shown
    assert_inert(shown.replace("\r\n", "\n"))
    assert "^[[2J^[[H" in shown and "<U+009B>2J" in shown and "rm -rf /^Mls" in shown
    code, listing = run_on_pty(shared_server, "job", "list")
    assert code == 0
    assert "\x1b[31mred" not in listing
    assert_inert(without_rich_colours(listing))
    assert "[bold]x[/bold]" in listing
    print(f"escapes reaching the terminal: 0 of {len(attacks)} attacks ({len(script)} chars)")


def test_color_lets_only_sgr_colours_through_on_a_pty(shared_server: ServerProcess) -> None:
    """--color always: the job's colours reach the terminal; every other attack, and SGR's
    conceal, is still shown and never obeyed."""
    attacks = [*ATTACKS.values(), "\x1b[8mconcealed\x1b[0m", "\x1b[38;5;196mgrey\x1b[m"]
    argv = ["job", "run", "--color", "always", "-s", "provider=local", "--",
            "printf", "%s\\n", *attacks]
    code, shown = run_on_pty(shared_server, *argv)
    assert code == 0, shown
    assert "\x1b[31mred\x1b[0m" in shown and "\x1b[38;5;196mgrey\x1b[m" in shown
    assert "^[[8mconcealed" in shown
    assert_inert(without_rich_colours(shown))
    assert "^[[2J^[[H" in shown and "<U+009B>2J" in shown and "rm -rf /^Mls" in shown
    # The default stays: colours shown escaped.
    code, plain = run_on_pty(shared_server, "job", "run", "-s", "provider=local", "--",
                             "printf", "\x1b[32mPASSED\x1b[0m\\n")
    assert code == 0 and "^[[32mPASSED^[[0m" in plain


def test_job_output_into_a_pipe_is_byte_exact(shared_server: ServerProcess) -> None:
    payload = "".join(ATTACKS.values()).encode() + b"\xff\xfe raw bytes\x00\r"
    program = (f"import sys; data = bytes.fromhex({payload.hex()!r}); "
               "sys.stdout.buffer.write(data); sys.stderr.buffer.write(data)")
    out = shared_server.hodeictl("job", "run", "-s", "provider=local", "--",
                                 "python3", "-c", program)
    assert out.returncode == 0, out.stderr
    assert out.stdout == payload
    assert out.stderr == payload
