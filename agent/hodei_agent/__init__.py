"""Hodei worker agent: registers with the control plane and runs its jobs as subprocesses."""

from __future__ import annotations

from importlib import metadata

try:
    __version__ = metadata.version("hodei")
except metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
