"""The plugins' exceptions: one root, whose subclasses name the kind of plugin that failed."""

from __future__ import annotations


class PluginError(Exception):
    """A plugin cannot do its work; the message is one line, meant for the operator.

    Plugins translate their SDK's errors into a subclass (`ProviderError`, `SecretError`)
    at their edge, so the server reports them in one line instead of a traceback.
    """
