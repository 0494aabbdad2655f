"""Docker image references, checked against the grammar of distribution/reference.

    reference := name [ ":" tag ] [ "@" digest ]
    name      := [ domain "/" ] path-component [ "/" path-component ]*

An image name only ever reaches the engine as one API field (never a shell word), but a
name outside the grammar is a mistake or an attempt: say so at start-up, in one line.
"""

from __future__ import annotations

import re

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|-+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(rf"(?P<name>{_NAME})(?::{_TAG})?(?:@{_DIGEST})?", re.ASCII)
MAX_NAME = 255


def check_reference(reference: str) -> None:
    """Raise ValueError naming the problem unless `reference` is a valid image reference."""
    match = _REFERENCE.fullmatch(reference)
    if match is None:
        shown = reference if len(reference) <= 80 else reference[:77] + "..."
        raise ValueError(
            f"image {shown!r} is not a valid image reference "
            "([registry/]name[:tag][@digest]; lower-case name components)"
        )
    if len(match.group("name")) > MAX_NAME:
        raise ValueError(f"image name is longer than {MAX_NAME} characters")
