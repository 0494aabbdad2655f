"""Hodei plugins: the hook specification, the plugin manager and the built-in plugins.

Write a plugin with `hodei_plugins.hookimpl`; see README "Plugins".
"""

from hodei_plugins.spec import hookimpl

__all__ = ["hookimpl"]
