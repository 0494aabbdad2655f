"""asyncssh, imported without its import-time noise.

asyncssh still supports DSA keys, and importing it makes cryptography warn (on stderr, before
a command prints anything) that DSA is deprecated. Hodei never offers or accepts a DSA key
of its own choosing; the warning says nothing to an operator, so it is silenced here, for
that import only.
"""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r".*\bDSA\b", module=r"asyncssh(\.|$)")
    import asyncssh

__all__ = ["asyncssh"]
