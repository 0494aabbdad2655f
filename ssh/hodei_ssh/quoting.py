"""Remote commands are built here and only here: every part quoted for a POSIX shell.

sshd hands a command string to the user's login shell, so nothing that comes from a host
name, a label, a user or a path may reach that string unquoted. Scripts are constant text
run as `sh -c SCRIPT hodei ARG...`: values arrive as positional parameters, never as code.
"""

from __future__ import annotations

import shlex


def shell(*parts: str) -> str:
    """One command line of `parts`, each quoted."""
    if not parts:
        raise ValueError("an empty command")
    return " ".join(shlex.quote(str(part)) for part in parts)


def script(text: str, *args: str) -> str:
    """The command line that runs the constant `text` with `sh`, `args` as $1, $2..."""
    return shell("sh", "-c", text, "hodei", *args)
