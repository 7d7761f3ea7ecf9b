"""Ref name rules, as ``git check-ref-format`` applies them to names it is asked to store."""

from __future__ import annotations

import re

# One scan for everything git forbids inside a name: control characters and space, the
# characters ~ ^ : ? * [ \ and DEL, "..", "@{", empty components ("//"), components that start
# with "." ("/.") and components that end in ".lock".
_FORBIDDEN = re.compile(r"[\x00-\x20~^:?*\[\\\x7f]|\.\.|@\{|//|/\.|\.lock/")


def is_valid_ref_name(name: str) -> bool:
    """True when git would accept ``name`` as a full ref name (``refs/...`` or ``HEAD``)."""
    if name == "HEAD":
        return True
    return (
        name.startswith("refs/")
        and len(name) > 5
        and not name.endswith(("/", ".", ".lock"))
        and _FORBIDDEN.search(name) is None
    )
