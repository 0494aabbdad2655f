"""The `hodeictl` entry point: the hottest command lines answered before typer is imported.

Importing typer and building its commands costs about as much as the rest of a start, so
two kinds of command line skip it:

- `hodeictl job list` with the options a person types every day (global options too);
- a Tab in bash that completes the name of a command or of a group's command.

Anything else, and any command line this module does not fully understand (`--help`,
`--watch`, an option it does not know, a value it would refuse), goes to the typer app
unchanged: every error reads the same as it always has. Tests run the fast command lines
both ways and compare what they print.
"""

from __future__ import annotations

import os
import sys
from typing import Any, NamedTuple

# Global options that take a value: the option -> the Settings field it fills.
_GLOBAL_VALUES = {"--server": "server", "--context": "context", "--token-file": "token_file",
                  "--ca-cert": "ca_cert"}
_GLOBAL_ENV = {"server": "HODEI_SERVER", "context": "HODEI_CONTEXT",
               "token_file": "HODEI_TOKEN_FILE", "ca_cert": "HODEI_CA_CERT"}
# `job list` options: the option -> its parameter; flags apart.
_LIST_VALUES = {"--state": "state", "--label": "label", "-l": "label", "--name": "name",
                "--since": "since", "--limit": "limit", "--output": "output", "-o": "output"}
_LIST_FLAGS = {"--all": "every", "-a": "every", "--no-headers": "no_headers",
               "--quiet": "quiet", "-q": "quiet"}
_REPEATABLE = frozenset({"state", "label"})


class _NotFast(Exception):
    """This command line goes to the typer app."""


class JobListCall(NamedTuple):
    """A `job list` command line, parsed: the global options and the list's."""

    settings: dict[str, Any]
    options: dict[str, Any]


def parse_job_list(argv: list[str], environ: dict[str, str] | os._Environ[str]) -> JobListCall:
    """The parts of `[global options] job list [options]`; raises _NotFast otherwise."""
    try:
        "".join(argv).encode("utf-8")
    except UnicodeEncodeError:
        raise _NotFast from None  # the typer app says which argument is not UTF-8
    settings: dict[str, Any] = {"debug": False}
    index = 0
    while index < len(argv) and argv[index].startswith("-"):
        option, value, index = _option(argv, index, _GLOBAL_VALUES, {"--debug": "debug"})
        settings[option] = value
    if argv[index:index + 2] != ["job", "list"]:
        raise _NotFast
    index += 2
    given: dict[str, Any] = {}
    while index < len(argv):
        option, value, index = _option(argv, index, _LIST_VALUES, _LIST_FLAGS)
        if option in _REPEATABLE:
            given.setdefault(option, []).append(value)
        elif option in given:
            raise _NotFast  # the last one wins in click; not worth repeating here
        else:
            given[option] = value
    for field, variable in _GLOBAL_ENV.items():
        if field not in settings and environ.get(variable):
            settings[field] = environ[variable]
    if environ.get("HODEI_DEBUG"):
        raise _NotFast  # click's reading of a boolean variable decides
    return JobListCall(settings, _list_options(settings, given))


def _option(argv: list[str], index: int, with_value: dict[str, str],
            flags: dict[str, str]) -> tuple[str, Any, int]:
    """(parameter, value, next index) of the option at argv[index]; raises _NotFast."""
    word = argv[index]
    if word in flags:
        return flags[word], True, index + 1
    name, equals, inline = word.partition("=")
    if name in with_value and equals and name.startswith("--"):
        return with_value[name], inline, index + 1
    if word in with_value and index + 1 < len(argv):
        return with_value[word], argv[index + 1], index + 2
    raise _NotFast


def _list_options(settings: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of joblist.list_jobs; raises _NotFast for a value the typer
    command would refuse (it then says why)."""
    from hodeictl import joblist, values
    from hodeictl.output import OutputFormat

    try:
        if "server" in settings:
            values.server_address(settings["server"])
        states = [state.lower() for state in given.get("state", [])]
        labels = {}
        for pair in given.get("label", []):
            key, sep, value = pair.partition("=")
            if not sep or not key:
                raise _NotFast
            labels[key] = value
        since = given.get("since")
        return {
            "states": states if set(states) <= set(joblist.STATES) else _refuse(),
            "labels": labels,
            "name": given.get("name", ""),
            "since": None if since is None else values.duration(values.MAX_SINCE_SECONDS)(since),
            "limit": values.integer(1, values.INT32_MAX)(given.get("limit", 50)),
            "every": given.get("every", False),
            "output_format": OutputFormat(given.get("output", "table").lower()),
            "no_headers": given.get("no_headers", False),
            "quiet": given.get("quiet", False),
        }
    except ValueError:
        raise _NotFast from None


def _refuse() -> Any:
    raise _NotFast


def complete_bash(environ: dict[str, str] | os._Environ[str]) -> list[str] | None:
    """The names a Tab offers when it completes a command's name (as typer's bash
    completion would print them); None when the typer app must answer."""
    from hodeictl.commandlist import (
        COMMANDS,
        GROUP_COMMANDS,
        ROOT_COMMANDS,
        SUBGROUPS,
        third_party_plugins,
    )

    try:
        words = environ["COMP_WORDS"].split()
        current = int(environ["COMP_CWORD"])
    except (KeyError, ValueError):
        return None
    if not 1 <= current <= 2 or current > len(words):
        return None
    typed = words[current] if current < len(words) else ""
    before = words[1:current]
    if (typed.startswith("-") or any(not w.isalnum() for w in before)
            or any(not (c.isalnum() or c in "-_") for c in typed)):
        return None
    if not before:
        if third_party_plugins():
            return None  # their commands come from the plugin hook, through typer
        names: tuple[str, ...] = (*ROOT_COMMANDS, *SUBGROUPS, *COMMANDS)
    elif before[0] in GROUP_COMMANDS:
        names = GROUP_COMMANDS[before[0]]
    else:
        return None
    return [name for name in names if name.startswith(typed)]


def _fast_job_list(call: JobListCall) -> None:
    """Run `job list` as the typer command would, errors reported the same way."""
    from hodeictl import joblist, target
    from hodeictl.errors import HodeiCtlError
    from hodeictl.terminal import one_line

    settings = target.Settings(**call.settings)
    try:
        joblist.list_jobs(settings, **call.options)
    except HodeiCtlError as error:
        if settings.debug:
            import traceback

            traceback.print_exception(error)
        sys.stderr.write(one_line(f"hodeictl: {error}") + "\n")
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("\nAborted!\n")  # as click says it
        sys.exit(1)
    except BrokenPipeError:
        # The reader went away (`| head`): as click does, quietly, exit status 1.
        sys.stdout = open(os.devnull, "w")
        sys.exit(1)


def main() -> None:
    """Console-script entry point: `hodeictl`."""
    if "_HODEICTL_COMPLETE" in os.environ:
        if os.environ["_HODEICTL_COMPLETE"] == "complete_bash":
            names = complete_bash(os.environ)
            if names is not None:
                sys.stdout.write("\n".join(names) + "\n")  # as typer prints them
                return
    else:
        try:
            call = parse_job_list(sys.argv[1:], os.environ)
        except _NotFast:
            pass
        else:
            _fast_job_list(call)
            return
    from hodeictl.app import main as full

    full()
