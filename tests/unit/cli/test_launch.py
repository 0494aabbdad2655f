"""The fast command lines of hodeictl.launch answer exactly as the typer app does.

`hodeictl job list` and a Tab completing a command's name skip typer; each is run both ways
here (the installed `hodeictl` script, and the typer app in-process) and what they print
is compared. A command line the fast path does not understand must reach the typer app.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import typer
from hodeictl_fakes import FakeJobService, invoke, serve, services

from hodei_api.v1 import jobs_pb2
from hodeictl import app, joblist, launch
from hodeictl.commandlist import GROUP_COMMANDS, ROOT_COMMANDS
from hodeictl.commands.job import StateFilter

HODEICTL = str(Path(sys.executable).with_name("hodeictl"))


def _jobs() -> list[jobs_pb2.Job]:
    jobs = []
    for index, state in enumerate([jobs_pb2.JOB_STATE_SUCCEEDED, jobs_pb2.JOB_STATE_FAILED,
                                   jobs_pb2.JOB_STATE_PENDING, jobs_pb2.JOB_STATE_RUNNING]):
        job = jobs_pb2.Job(id=str(uuid.uuid4()), state=state, attempt=1)
        job.spec.name = f"build-{index}"
        job.spec.command.extend(["make", f"target-{index}"])
        job.spec.labels["team"] = "infra" if index % 2 else "apps"
        job.created_at.FromSeconds(int(time.time()) - 7200 + index * 1800)
        jobs.append(job)
    return jobs


def _script(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The installed console script, as a person runs it (stdout a pipe)."""
    return subprocess.run([HODEICTL, *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "COLUMNS": "200", **(env or {})}, check=False)


FAST_LINES = [
    ["job", "list"],
    ["job", "list", "-o", "wide"],
    ["job", "list", "-o", "JSON"],
    ["job", "list", "--output=yaml"],
    ["job", "list", "-o", "name", "--state", "failed", "--state", "RUNNING"],
    ["job", "list", "-l", "team=infra", "--no-headers"],
    ["job", "list", "--label=team=apps", "-q"],
    ["job", "list", "--name", "build-*", "--since", "1h", "--limit", "2"],
    ["job", "list", "-a", "--state=pending"],
]


@pytest.mark.parametrize("argv", FAST_LINES, ids=" ".join)
def test_job_list_prints_what_the_typer_command_prints(argv: list[str]) -> None:
    with serve(services(jobs=FakeJobService(_jobs(), page_size=3))) as address:
        fast = _script("--server", address, *argv)
        typed = invoke("--server", address, *argv)
    assert (fast.returncode, fast.stdout, fast.stderr) == (
        typed.exit_code, typed.stdout, typed.stderr)
    assert fast.stdout


@pytest.mark.parametrize("argv", [
    ["job", "list", "--state", "bogus"],
    ["job", "list", "-l", "team"],
    ["job", "list", "--since", "yesterday"],
    ["job", "list", "--limit", "0"],
    ["job", "list", "--colour"],
    ["job", "list", "extra"],
    ["job", "list", "-o"],
    ["--server", "no port", "job", "list"],
], ids=" ".join)
def test_a_line_the_fast_path_would_refuse_is_refused_by_typer(argv: list[str]) -> None:
    with pytest.raises(launch._NotFast):
        launch.parse_job_list(argv, {})
    fast = _script(*argv)
    typed = invoke(*argv)
    assert (fast.returncode, fast.stderr) == (typed.exit_code, typed.stderr)
    assert fast.returncode == 2 and fast.stderr.startswith("hodeictl: ")


def test_the_fast_path_reads_the_global_options_and_their_variables() -> None:
    call = launch.parse_job_list(["--context", "prod", "--debug", "job", "list", "-q"],
                                 {"HODEI_SERVER": "h:1", "HODEI_CONTEXT": "ignored"})
    assert call.settings == {"debug": True, "context": "prod", "server": "h:1"}
    assert call.options["quiet"] is True
    with pytest.raises(launch._NotFast):  # click decides what a boolean variable means
        launch.parse_job_list(["job", "list"], {"HODEI_DEBUG": "0"})


def test_an_unreachable_server_is_one_line_and_the_same_exit_code() -> None:
    fast = _script("--server", "127.0.0.1:1", "job", "list")
    typed = invoke("--server", "127.0.0.1:1", "job", "list")
    assert fast.returncode == typed.exit_code == 69
    assert fast.stderr == typed.stderr and fast.stderr.count("\n") == 1


def test_the_fast_job_list_imports_no_typer(tmp_path: Path) -> None:
    with serve(services(jobs=FakeJobService(_jobs()))) as address:
        code = ("import sys\nfrom hodeictl import launch\n"
                f"sys.argv = ['hodeictl', '--server', {address!r}, 'job', 'list', '-q']\n"
                "launch.main()\nprint('typer' in sys.modules, 'click' in sys.modules)")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=60, cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "False False"
    assert len(done.stdout.splitlines()) == 5  # four ids


def test_the_states_it_accepts_are_the_typer_commands() -> None:
    assert joblist.STATES == tuple(state.value for state in StateFilter)


def test_the_command_tables_are_the_typer_apps() -> None:
    root = typer.main.get_command(app.app)
    ctx = typer.Context(root)
    assert [name for name in root.list_commands(ctx)[:len(ROOT_COMMANDS)]] == list(
        ROOT_COMMANDS)
    for group, names in GROUP_COMMANDS.items():
        assert tuple(root.get_command(ctx, group).commands) == names, group


def _typer_completion(words: str, current: int) -> str:
    env = {**os.environ, "_HODEICTL_COMPLETE": "complete_bash", "COMP_WORDS": words,
           "COMP_CWORD": str(current)}
    code = "from hodeictl.app import main\nmain()"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=60, check=False).stdout


@pytest.mark.parametrize(("words", "current"), [
    ("hodeictl ", 1), ("hodeictl j", 1), ("hodeictl job ", 2), ("hodeictl job l", 2),
    ("hodeictl template d", 2), ("hodeictl worker ", 2), ("hodeictl zz", 1),
])
def test_a_tab_offers_what_typer_offers(words: str, current: int) -> None:
    env = {**os.environ, "COMP_WORDS": words, "COMP_CWORD": str(current)}
    fast = launch.complete_bash(env)
    assert fast is not None
    assert "\n".join(fast) + "\n" == _typer_completion(words, current)


@pytest.mark.parametrize(("words", "current"), [
    ("hodeictl job list --", 3), ("hodeictl job -", 2), ("hodeictl --server x job ", 3),
    ("hodeictl nope ", 2), ("hodeictl job get ", 3),
])
def test_other_tabs_go_to_typer(words: str, current: int) -> None:
    env = {**os.environ, "COMP_WORDS": words, "COMP_CWORD": str(current)}
    assert launch.complete_bash(env) is None
