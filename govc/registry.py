"""The repositories one server holds, by name (names may contain ``/``, never ``..``).

Where they are kept durably is the registry's *directory*: a data directory (SQLite and pack
files, one node) or a PostgreSQL database several nodes share. With a shared one the registry
also has a :class:`govc.cluster.Cluster` that, once started, follows what the other nodes do.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from govc.events import EventLog
from govc.names import RepositoryNameError, normalize_name
from govc.permissions import Permissions
from govc.protection import ProtectionStore
from govc.repository import Repository
from storage.disk import DataDirectory

if TYPE_CHECKING:
    from govc.cluster import Cluster
    from storage.postgres import PostgresDirectory

__all__ = ["Registry", "RepositoryExists", "RepositoryNameError", "normalize_name"]


class RepositoryExists(Exception):
    pass


class Registry:
    """Repositories by name; with a directory, each one durable and reloaded at start-up.

    ``hooks_dir`` is where hook executables are looked up: by default the data directory's
    ``hooks``; with a shared database, whatever node-local directory the caller names (hook
    scripts are programs on this machine, not data the nodes share).
    """

    def __init__(
        self, directory: DataDirectory | PostgresDirectory | None = None,
        progress: Callable[[int, int], None] | None = None, *, hooks_dir: Path | None = None,
    ) -> None:
        self.directory = directory
        self.hooks_dir = hooks_dir
        if hooks_dir is None and isinstance(directory, DataDirectory):
            self.hooks_dir = directory.path / "hooks"
        self.events = EventLog(directory)
        self.protections = ProtectionStore(directory)
        #: Grants and per-repository settings (with a directory; ``--auth`` needs one).
        self.permissions = Permissions(directory) if directory is not None else None
        #: Following other nodes, with a shared database (started by the server).
        self.cluster: Cluster | None = None
        self._repos: dict[str, Repository] = {}
        self._lock = threading.Lock()
        if directory is not None:
            if directory.shared:
                from govc.cluster import Cluster

                # Read before loading: every event after it is either in what is loaded or
                # still to be followed, never neither.
                self.cluster = Cluster(self, directory, start_after=directory.last_event_id())  # type: ignore[arg-type]
            names = directory.repo_names()
            for i, name in enumerate(names, 1):
                self._repos[name] = self._adopt(Repository.restore(name, directory.backend(name)))
                if progress is not None:
                    progress(i, len(names))

    def _adopt(self, repo: Repository) -> Repository:
        repo.subscribe(self.events.record)
        repo.protection_rules = lambda: self.protections.rules_for(repo.name)
        repo.hooks_dir = self.hooks_dir
        if isinstance(self.directory, DataDirectory) and repo.durable:
            repo.repo_dir = self.directory.pack_dir(repo.name).parent.parent
        if self.cluster is not None:
            self.cluster.attach(repo)
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
            if self.directory is not None and self.directory.shared and \
                    self.directory.repo_exists(key):  # type: ignore[union-attr]
                self._repos[key] = self._adopt(Repository.restore(key, self.directory.backend(key)))
                raise RepositoryExists(key)  # another node made it a moment ago
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
                if self.directory is not None and self.directory.shared:
                    # Another node may have pushed to it meanwhile: only an empty one goes.
                    if not self.directory.delete_repo_if_empty(name):  # type: ignore[union-attr]
                        return
                elif self.directory is not None:
                    self.directory.delete_repo(name)
                del self._repos[name]

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

    # -- what a cluster's follower does (govc.cluster) -----------------------------------------

    def reconcile(self, name: str) -> tuple[Repository | None, str]:
        """Agree with the shared store about ``name``: serve it if it is stored and not served
        here (created on another node), stop serving it if it is served but no longer stored
        (deleted on another node). Returns the repository now served (or None) and what was done:
        ``"adopted"``, ``"forgotten"`` or ``"unchanged"``.

        Looked at under the registry's lock, which local creations and deletions also hold
        while they change the store, so a repository this node is creating or discarding at the
        same moment is never mistaken for another node's doing.
        """
        assert self.directory is not None
        with self._lock:
            repo = self._repos.get(name)
            stored = self.directory.repo_exists(name)  # type: ignore[union-attr]
            if stored and repo is None:
                repo = self._repos[name] = self._adopt(
                    Repository.restore(name, self.directory.backend(name)))
                return repo, "adopted"
            if not stored and repo is not None and repo.durable:
                del self._repos[name]
                return None, "forgotten"
            return repo, "unchanged"

    def repositories(self) -> dict[str, Repository]:
        return dict(self._repos)

    # -- reading -------------------------------------------------------------------------------

    def names(self) -> list[str]:
        return sorted(self._repos)

    def __len__(self) -> int:
        return len(self._repos)

    def object_count(self) -> int:
        return sum(len(r.objects) for r in self._repos.values())


def describe(directory: Any) -> str:
    """Where a registry keeps its repositories, for start-up messages."""
    if isinstance(directory, DataDirectory):
        return f"data directory {directory.path}"
    if directory is None:
        return "memory only, nothing is written to disk"
    return repr(directory)
