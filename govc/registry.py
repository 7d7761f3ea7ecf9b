"""The repositories one server holds, by name (names may contain ``/``, never ``..``)."""

from __future__ import annotations

import re
import threading

from govc.repository import Repository

_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")


class RepositoryNameError(ValueError):
    """A repository name that cannot be used (path traversal, odd characters, too long)."""


class RepositoryExists(Exception):
    pass


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


class Registry:
    def __init__(self) -> None:
        self._repos: dict[str, Repository] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> Repository | None:
        return self._repos.get(normalize_name(name))

    def create(self, name: str) -> Repository:
        key = normalize_name(name)
        with self._lock:
            if key in self._repos:
                raise RepositoryExists(key)
            repo = self._repos[key] = Repository(key)
            return repo

    def get_or_create(self, name: str) -> tuple[Repository, bool]:
        key = normalize_name(name)
        with self._lock:
            repo = self._repos.get(key)
            if repo is not None:
                return repo, False
            repo = self._repos[key] = Repository(key)
            return repo, True

    def discard_if_empty(self, name: str, repo: Repository) -> None:
        """Undo an implicit creation when the push that caused it changed nothing."""
        with self._lock:
            if self._repos.get(name) is repo and repo.is_empty():
                del self._repos[name]

    def names(self) -> list[str]:
        return sorted(self._repos)

    def __len__(self) -> int:
        return len(self._repos)
