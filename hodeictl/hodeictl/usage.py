"""The one place that turns click's usage errors into one line and exit code 2.

typer (through click) reports a bad option value, an unknown option or command, a missing
argument, with a usage line, a hint and a box several lines tall. hodeictl's root command
group runs the whole command line inside `one_line_errors()`, so every command and option,
including those a plugin adds, reports instead:

    hodeictl: --cpus: '-1' is not a number from 0 to 4096

naming the option (or argument) and the value, and exits 2. The help that a group prints
when it is given no sub-command is left alone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import typer

from hodeictl.errors import EXIT_USAGE
from hodeictl.terminal import one_line
from hodeictl.values import shown

# click's exception classes, whether typer carries its own copy of click (newer versions)
# or depends on click itself: typer re-exports BadParameter, and the others are its bases.
_CLICK_EXCEPTION: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"
)
# typer's pydantic coercion prefixes the message of a ValueError raised by a parser.
_PARSER_PREFIX = "Value error, "
_HELP_REQUESTED = "NoArgsIsHelpError"
# A word longer than this in a message (a value someone typed) is shown cut in the middle.


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
    """Report a click error raised inside as one line on stderr, and exit with its code."""
    try:
        yield
    except _CLICK_EXCEPTION as error:
        if type(error).__name__ == _HELP_REQUESTED:
            raise
        typer.echo(f"hodeictl: {describe(error)}", err=True)
        raise typer.Exit(getattr(error, "exit_code", EXIT_USAGE)) from None


def describe(error: Exception) -> str:
    """One line saying what was wrong and what to fix."""
    if isinstance(error, typer.BadParameter):
        message = _message(error)
        param = getattr(error, "param", None)
        if type(error).__name__ == "MissingParameter":
            what = _param_name(param) if param is not None else "a value"
            return one_line(f"{_command(error)}missing {what}{_choices(param)}{_help(error)}")
        if param is not None:
            return one_line(f"{_param_name(param)}: {message}")
        return one_line(f"{_command(error)}{message}{_help(error)}")
    format_message = getattr(error, "format_message", None)
    message = format_message() if callable(format_message) else str(error)
    return one_line(f"{_command(error)}{_lower_first(message).rstrip('.')}{_help(error)}")


def not_utf8(error: UnicodeEncodeError, args: Sequence[str]) -> str:
    """One line for text that is not UTF-8 (an argument of `args`, or a file name)."""
    text = error.object if isinstance(error.object, str) else ""
    bad = text[error.start:error.end]
    for index, arg in enumerate(args):
        if bad and bad in arg:
            option, eq, value = arg.partition("=")
            if arg.startswith("--") and eq:
                return one_line(f"{option}: {shown(value)} is not UTF-8 text")
            before = args[index - 1] if index else ""
            named = f"{before}: " if before.startswith("-") and before != "--" else ""
            return one_line(f"{named}{shown(arg)} is not UTF-8 text")
    return one_line(f"{shown(text)} is not UTF-8 text")


def _message(error: Exception) -> str:
    return str(getattr(error, "message", error)).removeprefix(_PARSER_PREFIX)


def _param_name(param: Any) -> str:
    """`--cpus` for an option (its long name), `NAME` for an argument."""
    opts = list(getattr(param, "opts", None) or [])
    if getattr(param, "param_type_name", "") == "option" and opts:
        return next((o for o in opts if o.startswith("--")), opts[0])
    metavar = getattr(param, "metavar", None)
    return str(metavar or getattr(param, "name", "") or "").upper() or "an argument"


def _choices(param: Any) -> str:
    metavar = getattr(param, "metavar", None)
    if getattr(param, "param_type_name", "") == "option" and metavar:
        return f" {metavar}"
    return ""


def _command(error: Exception) -> str:
    """`job submit: ` for an error raised while parsing `hodeictl job submit ...`."""
    ctx = getattr(error, "ctx", None)
    path = str(getattr(ctx, "command_path", "") or "").split(" ", 1)
    return f"{path[1]}: " if len(path) > 1 else ""


def _help(error: Exception) -> str:
    ctx = getattr(error, "ctx", None)
    path = getattr(ctx, "command_path", None)
    return f" (see: {path} --help)" if path else ""


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:] if text[1:2].islower() else text


