"""Ref name rules, as ``git check-ref-format`` applies them to names it is asked to store."""

from __future__ import annotations

_FORBIDDEN = set(" ~^:?*[\\\x7f")


def is_valid_ref_name(name: str) -> bool:
    """True when git would accept ``name`` as a full ref name (``refs/...`` or ``HEAD``)."""
    if name == "HEAD":
        return True
    if not name.startswith("refs/") or name.endswith("/") or name.endswith("."):
        return False
    if "//" in name or ".." in name or "@{" in name or name == "@":
        return False
    for ch in name:
        if ord(ch) < 0x20 or ch in _FORBIDDEN:
            return False
    for part in name.split("/"):
        if not part or part.startswith(".") or part.endswith(".lock"):
            return False
    return len(name.split("/")) >= 2
