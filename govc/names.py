"""Repository names: what a request may call a repository (names may contain ``/``, never ``..``,
so no name can reach outside a data directory)."""

from __future__ import annotations

import re

_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")


class RepositoryNameError(ValueError):
    """A repository name that cannot be used (path traversal, odd characters, too long)."""


def normalize_name(name: str) -> str:
    """``team/app.git`` -> ``team/app``; raises for names that could escape a data directory."""
    name = name.strip("/")
    if name.endswith(".git"):
        name = name[:-4]
    if not name or len(name) > 200:
        raise RepositoryNameError("repository name must be 1-200 characters")
    for segment in name.split("/"):
        if segment in ("", ".", "..") or not _SEGMENT.match(segment) or segment.endswith(".git"):
            raise RepositoryNameError(f"invalid repository name {name!r}")
    return name


__all__ = ["RepositoryNameError", "normalize_name"]
