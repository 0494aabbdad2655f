"""The names of hodeictl's built-in commands, known without importing typer or them.

`hodeictl --help` lists the groups from here before any is imported, and a Tab that
completes a command's name (hodeictl.launch) is answered from here. A test checks these
tables against the typer app.
"""

from __future__ import annotations

import os
import re
import sys

# The built-in command groups: module, Typer attribute, the help shown in `hodeictl --help`.
# A group's module is imported only when the command line names it (a test checks that
# each help here is the group's own).
SUBGROUPS: dict[str, tuple[str, str, str]] = {
    "job": ("hodeictl.commands.job", "app", "Run, inspect and cancel jobs."),
    "worker": ("hodeictl.commands.worker", "app", "Inspect and drain workers."),
    "context": ("hodeictl.commands.context", "app",
                "Manage contexts: named Hodei servers ('local' is the embedded stack)."),
    "plugin": ("hodeictl.commands.plugin", "app", "Inspect plugins."),
    "provider": ("hodeictl.commands.provider", "app", "Inspect providers."),
    "token": ("hodeictl.commands.token", "app", "Manage API tokens (needs the admin role)."),
    "audit": ("hodeictl.commands.token", "audit_app",
              "Read the security audit log (needs the admin role)."),
    "certs": ("hodeictl.commands.certs", "app", "Certificates for running Hodei with TLS."),
    "secret": ("hodeictl.commands.secret", "app", "Set, list and delete secrets jobs can use."),
    "template": ("hodeictl.commands.template", "app",
                 "Define jobs once, run them many times, on a schedule or by hand."),
    "schedule": ("hodeictl.commands.schedule", "app",
                 "List, suspend and resume the schedules of templates."),
    # The ssh provider's commands (its plugin also offers them to the plugin hook).
    "host": ("hodei_ssh.cli", "app",
             "Bare-metal hosts reached over SSH: register, trust, check, bootstrap into "
             "workers, remove."),
}
# Built-in commands whose module is heavy (grpc, protobuf): name -> module, function, the
# help shown in `hodeictl --help`; the module is imported only when the command is named.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "events": ("hodeictl.commands.events", "events",
               "Show what happened: job and worker state changes, and (to admins) security "
               "events."),
}

# The commands the typer app declares itself, in the order `hodeictl --help` lists them.
ROOT_COMMANDS = ("up", "down", "status", "whoami", "version", "tui")

# Each group's commands, in the order it declares them.
GROUP_COMMANDS: dict[str, tuple[str, ...]] = {
    "job": ("run", "submit", "get", "list", "logs", "cancel", "retry", "delete", "wait",
            "schema"),
    "worker": ("list", "drain"),
    "context": ("list", "use", "set", "view", "delete"),
    "plugin": ("list",),
    "provider": ("list",),
    "token": ("create", "revoke", "list"),
    "audit": ("list",),
    "certs": ("init",),
    "secret": ("set", "list", "delete"),
    "template": ("create", "update", "list", "get", "disable", "enable", "delete", "run"),
    "schedule": ("list", "suspend", "resume"),
    "host": ("add", "trust", "check", "bootstrap", "list", "remove"),
}

_PLUGIN_GROUP = re.compile(r"^\[\s*hodei\s*\]\s*$", re.MULTILINE)


def third_party_plugins() -> list[str]:
    """Installed distributions other than hodei itself with entry points in group `hodei`.

    Read from the `entry_points.txt` of each `*.dist-info` on sys.path, as
    importlib.metadata would, without its import cost (`hodeictl --help` pays this).
    """
    found = []
    for entry in sys.path:
        try:
            listing = os.listdir(entry or ".")
        except OSError:
            continue
        for item in listing:
            if not item.endswith((".dist-info", ".egg-info")):
                continue
            try:
                with open(os.path.join(entry or ".", item, "entry_points.txt"),
                          encoding="utf-8") as file:
                    text = file.read()
            except (OSError, UnicodeDecodeError):
                continue
            name = item.rsplit(".", 1)[0].split("-", 1)[0].lower().replace(".", "_")
            if _PLUGIN_GROUP.search(text) and name != "hodei":
                found.append(name)
    return found
