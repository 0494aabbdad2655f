"""Bad input on the command line: one line naming what to fix, exit 2, never a traceback.

The command tree is walked, so every option and argument of every command (those added
later and those a plugin adds too) is given hostile values: negative, huge, NaN, empty,
not UTF-8, control characters. A value hodeictl accepts goes on to a server that is not
there (127.0.0.1:1): that, too, must end in one line.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main
import typer.testing
from hodeictl_fakes import invoke
from typer.testing import Result

from hodeictl import app, config, errors, values

NOWHERE = "127.0.0.1:1"  # bound by nothing: connections are refused at once
HOSTILE = [
    "-1", "-0", "nan", "-inf", "1e400", "2^70", "99999999999999999999999", "9" * 5000,
    "", " ", "\x00", "a\nb", "\r", "\x1b[2J", "\u202e", "\udcff\udcfe", "é😀",
    "$(id)", "'; --", "../../etc/passwd", "x" * 70_000, "-",
]
NUMBERS_REFUSED = ["-1", "nan", "inf", "-inf", "1e400", "2^70", "99999999999999999999999",
                   "9" * 5000, "", " ", "abc", "0x10", "\x00"]
# Valid values for the parameters a command requires, so that the one under test is reached.
SAMPLES = {
    "job_id": str(uuid.uuid4()),
    "worker_id": "worker-1",
    "job_ref": str(uuid.uuid4()),
    "worker_ref": "worker-1",
    "name": "prod",
    "server": NOWHERE,
    "role": "viewer",
    "address": "192.0.2.7",
    "user": "hodei",
}
SKIPPED = {"--help", "--install-completion", "--show-completion", "--version"}
# What a job command gets to run instead of `-- true` while one of these is under test.
INSTEAD_OF_COMMAND = {"--script": [], "--interpreter": ["--script", "true"]}
EXIT_CODES = {0, errors.EXIT_FAILURE, errors.EXIT_USAGE, errors.EXIT_UNAVAILABLE,
              errors.EXIT_CONFIG}


ROOT = typer.main.get_command(app.app)


@pytest.fixture(autouse=True)
def built_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Invoke the one click command tree built above: typer's runner would build it again
    for every run (25 ms, where a refused value takes under 1 ms)."""
    build = typer.testing._get_command  # type: ignore[attr-defined]
    monkeypatch.setattr(typer.testing, "_get_command",
                        lambda typer_app: ROOT if typer_app is app.app else build(typer_app))


def commands(command: Any = ROOT, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...],
                                                                               Any]]:
    """(path, click command) of every command hodeictl has, groups first."""
    yield path, command
    # The root group imports its sub-groups when asked for them (hodeictl.app).
    names = command.list_commands(None) if hasattr(command, "list_commands") else []
    for name in sorted(names):
        yield from commands(command.get_command(None, name), (*path, name))


def takes_values(param: Any) -> bool:
    return not getattr(param, "is_flag", False) and not set(param.opts) & SKIPPED


SLOTS = [(path, param) for path, command in commands() for param in command.params
         if takes_values(param)]


def slot_id(slot: tuple[tuple[str, ...], Any]) -> str:
    path, param = slot
    return " ".join([*path, param.opts[0] if param.param_type_name == "option" else param.name])


def argv(path: tuple[str, ...], param: Any, value: str) -> list[str]:
    """A command line for `path` with `value` for `param` and valid values elsewhere."""
    if not path:  # a root option, with a command that needs no server to parse
        root = [] if param.opts[0] == "--server" else ["--server", NOWHERE]
        return [*root, param.opts[0], value, "job", "list"]
    command = dict(commands())[path]
    line = ["--server", NOWHERE, *path]
    trailing: list[str] = []
    for other in command.params:
        if other is param:
            if other.param_type_name == "option":
                line += [other.opts[0], value]
            elif other.nargs == -1:
                trailing = ["--", value]
            else:
                line.append(value)
        elif other.param_type_name == "argument" and other.nargs == -1:
            trailing = INSTEAD_OF_COMMAND.get(param.opts[0], ["--", "true"])
        elif other.required:
            assert other.name in SAMPLES, f"add a valid sample for {other.name!r}"
            sample = SAMPLES[other.name]
            line += [other.opts[0], sample] if other.param_type_name == "option" else [sample]
    return line + trailing


def one_line_or_success(result: Result, argv: list[str]) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        (argv[:8], result.exception)
    assert result.exit_code in EXIT_CODES, (argv[:8], result.exit_code, result.stderr)
    for text in (result.stdout, result.stderr):
        assert "Traceback" not in text and "╭" not in text, (argv[:8], text)
    if result.exit_code != 0:
        assert result.stderr.startswith("hodeictl: "), (argv[:8], result.stderr)
        assert result.stderr.count("\n") == 1, (argv[:8], result.stderr)
        assert len(result.stderr) < 600, (argv[:8], result.stderr[:600])


@pytest.mark.parametrize("slot", SLOTS, ids=[slot_id(s) for s in SLOTS])
def test_every_option_of_every_command_answers_hostile_values_in_one_line(
    slot: tuple[tuple[str, ...], Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # `certs init --dir VALUE` writes where it is told
    path, param = slot
    seen: dict[int, int] = {}
    for value in HOSTILE:
        line = argv(path, param, value)
        result = invoke(*line)
        one_line_or_success(result, line)
        seen[result.exit_code] = seen.get(result.exit_code, 0) + 1
    print(f"{slot_id(slot)}: tracebacks 0 of {len(HOSTILE)} hostile values (exit codes {seen})")


NUMBER_SLOTS = [slot for slot in SLOTS
                if getattr(getattr(slot[1], "type_descriptor", None), "annotation", None)
                in (int, float)]


def test_there_are_number_options_to_check() -> None:
    names = {slot_id(slot) for slot in NUMBER_SLOTS}
    assert {"job run --cpus", "job submit --memory-mb", "audit list --after",
            "certs init --days"} <= names


@pytest.mark.parametrize("slot", NUMBER_SLOTS, ids=[slot_id(s) for s in NUMBER_SLOTS])
def test_every_number_option_checks_its_range_and_names_itself(
    slot: tuple[tuple[str, ...], Any],
) -> None:
    path, param = slot
    option = next(o for o in param.opts if o.startswith("--"))
    for value in NUMBERS_REFUSED:
        line = argv(path, param, value)
        result = invoke(*line)
        assert result.exit_code == 2, (line[:8], result.stderr)
        assert result.stderr.startswith(f"hodeictl: {option}: "), result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
        assert " from " in result.stderr or " at most " in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["job", "run", "--cpus", "-1", "--", "x"],
         "hodeictl: --cpus: '-1' is not a number from 0 to 4096"),
        (["job", "submit", "--memory-mb", str(2**70), "--", "x"],
         f"hodeictl: --memory-mb: '{2**70}' is not a whole number from 0 to 1073741824"),
        (["job", "submit", "--max-attempts", "0", "--", "x"],
         "hodeictl: --max-attempts: '0' is not a whole number from 1 to 100"),
        (["job", "submit", "--timeout", "nan", "--", "x"],
         "hodeictl: --timeout: 'nan' is not a duration from 0 to 366 days, such as 90s, 5m, "
         "1h30m or 2d"),
        (["job", "list", "--state", "sleeping"],
         "hodeictl: --state: 'sleeping' is not one of 'pending', 'assigned', 'running', "
         "'succeeded', 'failed', 'cancelled', 'timed_out', 'lost', 'blocked'."),
        (["job", "submit", "--nope"],
         "hodeictl: job submit: no such option: --nope (Possible options: --name) "
         "(see: hodeictl job submit --help)"),
        (["job", "frobnicate"],
         "hodeictl: job: no such command 'frobnicate' (see: hodeictl job --help)"),
        (["job", "get"], "hodeictl: job get: missing JOB (see: hodeictl job get --help)"),
        (["job", "submit", "--cpus"], "hodeictl: option '--cpus' requires an argument"),
        (["up", "--detach=yes"], "hodeictl: option '--detach' does not take a value"),
        (["context", "set", "prod"],
         "hodeictl: context set: missing --server HOST:PORT "
         "(see: hodeictl context set --help)"),
        (["--frobnicate"], "hodeictl: no such option: --frobnicate (see: hodeictl --help)"),
    ],
)
def test_usage_errors_are_one_line_naming_what_to_fix(args: list[str], line: str) -> None:
    result = invoke("--server", NOWHERE, *args)
    assert (result.exit_code, result.stderr) == (2, line + "\n")


def test_a_bad_context_is_refused_when_stored() -> None:
    result = invoke("context", "set", "x y", "--server", "h:1")
    assert result.exit_code == 2
    assert result.stderr == (
        "hodeictl: NAME: 'x y' is not a context name: 1-63 letters, digits, '.', '_', '-' or "
        "'@', starting with a letter or digit\n")
    result = invoke("context", "set", "prod", "--server", "not a host")
    assert result.exit_code == 2
    assert result.stderr.startswith(
        "hodeictl: --server: 'not a host' is not a server address: HOST:PORT, ")
    assert not config.config_path().exists()
    with pytest.raises(errors.UsageError, match="is not a context name"):
        config.Config.load().set_context("a\nb", "h:1")


def test_a_stored_context_with_a_bad_address_is_one_line() -> None:
    path = config.config_path()
    path.parent.mkdir(parents=True)
    path.write_text('current_context = "old"\n[contexts.old]\nserver = "no port"\n')
    result = invoke("job", "list")
    assert result.exit_code == errors.EXIT_CONFIG
    assert result.stderr == (
        f"hodeictl: {path}: context 'old': 'no port' is not a server address: HOST:PORT, "
        "where HOST is a DNS name, an IPv4 address or an [IPv6] address, and PORT 1-65535; "
        "set it again with hodeictl context set\n")


@pytest.mark.parametrize("address", [
    "localhost:50051", "hodei.example.com:443", "hodei.example.com.:1", "10.0.0.1:65535",
    "[::1]:50051", "[2001:db8::1]:8080", "h:1", "a-b.c-d:9",
])
def test_server_addresses_accepted(address: str) -> None:
    assert values.server_address(address) == address


@pytest.mark.parametrize("address", [
    "", "h", "h:", ":1", "h:0", "h:65536", "h:-1", "h:1x", "not a host:1", "::1:50051",
    "[::1]", "[not-ip]:1", "-h:1", "h-:1", "a..b:1", "1.2.3.999:1", "h:1\n", "h\x00:1",
    "x" * 254 + ":1", "http://h:1", "h:\uff11",
])
def test_server_addresses_refused(address: str) -> None:
    with pytest.raises(ValueError, match="is not a server address"):
        values.server_address(address)


def test_a_multi_line_error_is_shown_on_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    result = invoke("context", "use", "a\nb\x1b[2J")
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1
    assert "^[[2J" in result.stderr or "\\x1b[2J" in result.stderr


BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    ("job_file", "message"),
    [
        ("command = " + "[" * 500 + "]" * 500 + "\n", "nested more than 32 levels deep"),
        ("env = " + "{a = " * 500 + "1" + "}" * 500 + "\n", "nested more than 32 levels deep"),
        ("[" + ".".join(["t"] * 500) + "]\n", "nested more than 32 levels deep"),
        ('command = ["a\x00"]\n', "invalid TOML: Illegal character '\\x00'"),
    ],
)
def test_the_real_binary_answers_a_hostile_job_file_in_one_line(
    tmp_path: Path, job_file: str, message: str,
) -> None:
    path = tmp_path / "job.toml"
    path.write_text(job_file, encoding="utf-8")
    done = subprocess.run([str(BIN / "hodeictl"), "--server", NOWHERE, "job", "submit",
                           "-f", str(path)], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr


def test_the_real_binary_answers_bytes_that_are_not_utf8_in_one_line(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "HODEI_CONFIG": str(tmp_path / "config.toml"), "HODEI_HOME": str(tmp_path / "h")}
    for args in ([b"job", b"submit", b"--cpus", b"\xff", b"--", b"x"],
                 [b"context", b"set", b"\xff\xfe", b"--server", b"h:1"],
                 [b"context", b"set", b"prod", b"--server", b"h\xff:1"],
                 [b"job", b"get", b"\xff"]):
        done = subprocess.run([str(BIN / "hodeictl").encode(), b"--server", NOWHERE.encode(),
                               *args], capture_output=True, timeout=60, env=env)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.count(b"\n") == 1 and b"Traceback" not in done.stderr, done.stderr
        assert b"\\udcff" in done.stderr or b"\\xff" in done.stderr, done.stderr
