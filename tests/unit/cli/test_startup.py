"""hodeictl starts fast: its app, its help and a Tab import nothing heavy.

benchmarks/bench_cli_start.py shows the times; these tests hold what makes them: grpc,
protobuf, rich, the plugins and the Docker SDK are imported by the commands that use them.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

from hodeictl import app

HEAVY = ("grpc", "google.protobuf", "rich", "docker", "hodei_api", "hodei_plugins", "pluggy",
         "asyncio")


def _imported_after(code: str, tmp_path: Path, env: dict[str, str] | None = None) -> list[str]:
    script = "import json, sys\n" + code + textwrap.dedent(
        f"""
        heavy = {HEAVY!r}
        print(json.dumps(sorted(
            {{name.split(".")[0] if name.split(".")[0] != "google" else "google.protobuf"
              for name in sys.modules
              if name in heavy or any(name.startswith(h + ".") for h in heavy)}})))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
        timeout=60, env={**os.environ, "HODEI_CONFIG": str(tmp_path / "config.toml"),
                         "HODEI_HOME": str(tmp_path / "home"), **(env or {})},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return list(json.loads(result.stdout.strip().splitlines()[-1]))


def test_importing_the_app_imports_no_grpc_rich_or_docker(tmp_path: Path) -> None:
    assert _imported_after("import hodeictl.app", tmp_path) == []


@pytest.mark.parametrize("argv", [["--help"], ["job", "--help"], ["job", "list", "--help"],
                                  ["job", "run", "--help"], ["worker", "--help"]])
def test_help_imports_nothing_heavy(tmp_path: Path, argv: list[str]) -> None:
    code = textwrap.dedent(f"""
        import contextlib, io
        from hodeictl.app import main
        sys.argv = ["hodeictl", *{argv!r}]
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                main()
            except SystemExit:
                pass
    """)
    assert _imported_after(code, tmp_path) == []


def test_a_tab_with_no_stack_running_imports_nothing_heavy(tmp_path: Path) -> None:
    code = textwrap.dedent("""
        import contextlib, io
        from hodeictl.app import main
        sys.argv = ["hodeictl"]
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            try:
                main()
            except SystemExit:
                pass
        assert "list" in out.getvalue().split(), out.getvalue()
    """)
    env = {"_HODEICTL_COMPLETE": "complete_bash", "COMP_WORDS": "hodeictl job ",
           "COMP_CWORD": "2"}
    assert _imported_after(code, tmp_path, env) == []


def test_the_root_help_of_each_group_is_its_own() -> None:
    for name, (module_name, attribute, help_text) in app.SUBGROUPS.items():
        group = getattr(importlib.import_module(module_name), attribute)
        assert group.info.help == help_text, name


def test_run_and_submit_take_the_same_job_options() -> None:
    root = typer.main.get_command(app.app)
    jobs = root.get_command(None, "job")  # type: ignore[attr-defined]

    def options(command: str) -> set[str]:
        return {opt for param in jobs.get_command(None, command).params for opt in param.opts}

    shared = options("submit")
    assert {"--file", "--cpus", "--timeout", "--after", "--secret-delivery"} <= shared
    assert options("run") | {"--count"} == shared | {"--detach", "-d", "--color"}


def test_plugin_commands_are_looked_for_only_beyond_the_builtin_distribution() -> None:
    # The built-in plugins (distribution hodei) add no commands: no plugin is imported.
    assert "hodei" not in app.third_party_plugins()


def _every_command(command: Any) -> Iterator[Any]:
    yield command
    names = command.list_commands(None) if hasattr(command, "list_commands") else []
    for name in names:
        yield from _every_command(command.get_command(None, name))


def test_a_parameter_not_given_comes_out_as_typers_coercion_would_make_it() -> None:
    import typer._click as click  # the click typer carries

    fast = typer.core._TyperParameter.process_value  # type: ignore[attr-defined]
    original = fast.original
    checked = 0
    for command in _every_command(typer.main.get_command(app.app)):
        ctx = click.Context(command)
        for param in [*command.params, command.get_help_option(ctx)]:
            if param is None or param.required:
                continue
            value, _ = param.consume_value(ctx, {})
            assert fast(param, ctx, value) == original(param, ctx, value), param.name
            checked += 1
    assert checked > 100
