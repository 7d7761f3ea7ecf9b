"""The repositories one server holds, by name (names may contain ``/``, never ``..``)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from govc.events import EventLog
from govc.names import RepositoryNameError, normalize_name
from govc.permissions import Permissions
from govc.protection import ProtectionStore
from govc.repository import Repository
from storage.disk import DataDirectory

__all__ = ["Registry", "RepositoryExists", "RepositoryNameError", "normalize_name"]


class RepositoryExists(Exception):
    pass


class Registry:
    """Repositories by name; with a data directory, each one durable and reloaded at start-up."""

    def __init__(
        self, directory: DataDirectory | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.directory = directory
        self.events = EventLog(directory)
        self.protections = ProtectionStore(directory)
        #: Grants and per-repository settings (with a data directory; ``--auth`` needs one).
        self.permissions = Permissions(directory) if directory is not None else None
        self._repos: dict[str, Repository] = {}
        self._lock = threading.Lock()
        if directory is not None:
            names = directory.repo_names()
            for i, name in enumerate(names, 1):
                self._repos[name] = self._adopt(Repository.restore(name, directory.backend(name)))
                if progress is not None:
                    progress(i, len(names))

    def _adopt(self, repo: Repository) -> Repository:
        repo.subscribe(self.events.record)
        repo.protection_rules = lambda: self.protections.rules_for(repo.name)
        if self.directory is not None:
            repo.hooks_dir = self.directory.path / "hooks"
            if repo.durable:
                repo.repo_dir = self.directory.pack_dir(repo.name).parent.parent
        return repo

    def _new(self, key: str) -> Repository:
        if self.directory is None:
            return self._adopt(Repository(key))
        self.directory.create_repo(key)
        return self._adopt(Repository.restore(key, self.directory.backend(key)))

    def add(self, name: str, repo: Repository) -> None:
        """Serve an existing in-memory repository under ``name``."""
        key = normalize_name(name)
        with self._lock:
            if key in self._repos:
                raise RepositoryExists(key)
            if not repo.name:
                repo.name = key
            self._repos[key] = self._adopt(repo)

    def get(self, name: str) -> Repository | None:
        return self._repos.get(normalize_name(name))

    def create(self, name: str) -> Repository:
        key = normalize_name(name)
        with self._lock:
            if key in self._repos:
                raise RepositoryExists(key)
            repo = self._repos[key] = self._new(key)
            return repo

    def get_or_create(self, name: str) -> tuple[Repository, bool]:
        key = normalize_name(name)
        with self._lock:
            repo = self._repos.get(key)
            if repo is not None:
                return repo, False
            repo = self._repos[key] = self._new(key)
            return repo, True

    def discard_if_empty(self, name: str, repo: Repository) -> None:
        """Undo an implicit creation when the push that caused it changed nothing."""
        with self._lock:
            if self._repos.get(name) is repo and repo.is_empty():
                del self._repos[name]
                if self.directory is not None:
                    self.directory.delete_repo(name)

    def delete(self, name: str) -> Repository:
        """Stop serving ``name`` and delete its data, protections, grants and settings (its past
        events stay in the event log). Raises KeyError when there is no such repository."""
        key = normalize_name(name)
        with self._lock:
            repo = self._repos.pop(key)
            if self.directory is not None:
                self.directory.delete_repo(key)
        self.protections.forget(key)
        if self.permissions is not None:
            self.permissions.forget(key)
        return repo

    def names(self) -> list[str]:
        return sorted(self._repos)

    def __len__(self) -> int:
        return len(self._repos)

    def object_count(self) -> int:
        return sum(len(r.objects) for r in self._repos.values())
