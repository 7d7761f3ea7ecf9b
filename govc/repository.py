"""A repository: an object store, a ref store and the one path every ref update takes."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from storage.graph import ObjectGraph
from storage.interfaces import Backend, MemoryBackend, ReflogEntry, RefUpdate
from storage.objects import MemoryObjectStore
from storage.packs import StoredPack
from storage.refs import MemoryRefStore

log = logging.getLogger("govc.repository")


@dataclass(frozen=True, slots=True)
class RefChange:
    name: str
    old: bytes | None
    new: bytes | None


@dataclass(frozen=True, slots=True)
class RefEvent:
    """One acknowledged ref transaction: what moved, who moved it and how."""

    repository: str
    changes: tuple[RefChange, ...]
    who: str
    message: str
    source: str  # "push", "api", "cli"
    time: float
    push_options: tuple[str, ...] = ()


Listener = Callable[[RefEvent], None]


@dataclass(slots=True)
class _Hooks:
    listeners: list[Listener] = field(default_factory=list)


class Repository:
    """A Git repository held in memory, optionally backed by durable storage.

    Every ref update, whether from a push or the Python API, goes through :meth:`update_refs`:
    compare-and-swap on the refs, the durable write (if a backend is attached) inside the same
    critical section, then one :class:`RefEvent` to every listener.
    """

    def __init__(self, name: str = "", backend: Backend | None = None) -> None:
        self.name = name
        self.objects = MemoryObjectStore()
        self.refs = MemoryRefStore()
        self.graph = ObjectGraph(self.objects)
        self.backend: Backend = backend if backend is not None else MemoryBackend()
        self._hooks = _Hooks()
        self._write_lock = threading.Lock()
        self.maintenance_lock = threading.Lock()  # one compaction at a time
        #: Refs created ephemeral live under this namespace and never touch the backend.
        self.ephemeral_namespace = "refs/realities/"
        self.ephemeral_refs: set[str] = set()
        self.created = time.time()

    # -- objects -----------------------------------------------------------------------------

    def add_pack(self, pack: StoredPack) -> None:
        """Make a checked pack's objects visible (durable first, then in memory)."""
        self.backend.store_pack(pack)
        self.objects.add_pack(pack)

    # -- refs --------------------------------------------------------------------------------

    @property
    def head_target(self) -> str | None:
        return self.refs.read_symref("HEAD")

    def is_empty(self) -> bool:
        return len(self.refs) == 0

    def update_refs(
        self,
        updates: Sequence[RefUpdate],
        *,
        who: str,
        message: str,
        source: str,
        push_options: Iterable[str] = (),
        ephemeral: bool = False,
    ) -> RefEvent:
        """Apply ``updates`` atomically (all or none) and announce them as one event.

        Raises :class:`storage.errors.RefError` subclasses for stale values, bad names and
        directory/file conflicts; nothing changes then. ``ephemeral=True`` creates refs under
        :attr:`ephemeral_namespace` that live in memory only: they, their later updates and
        their events never reach the backend.
        """
        options = tuple(push_options)
        if ephemeral:
            outside = [u.name for u in updates if not u.name.startswith(self.ephemeral_namespace)]
            if outside:
                raise ValueError(f"ephemeral refs must be under {self.ephemeral_namespace}: {outside}")

        def persist(changes: Mapping[str, bytes | None], reflog: Sequence[tuple[str, ReflogEntry]]) -> None:
            kept = {n: v for n, v in changes.items() if not ephemeral and n not in self.ephemeral_refs}
            if not kept:
                return
            log_kept = [(n, e) for n, e in reflog if n in kept]
            record = json.dumps({
                "repository": self.name,
                "changes": [{"ref": n, "old": e.old.decode(), "new": e.new.decode()} for n, e in log_kept],
                "who": who, "message": message, "source": source,
                "push_options": list(options), "time": log_kept[0][1].when,
            })
            self.backend.commit_refs(kept, self.refs.symrefs(), log_kept, record)

        plan = self.refs.update(updates, who=who, message=message, persist=persist)
        for name, _old, new_value in plan:
            if ephemeral and new_value is not None:
                self.ephemeral_refs.add(name)
            elif new_value is None:
                self.ephemeral_refs.discard(name)
        event = RefEvent(
            self.name,
            tuple(RefChange(n, o, w) for n, o, w in plan),
            who, message, source, time.time(), options,
        )
        for listener in list(self._hooks.listeners):
            try:
                listener(event)
            except Exception:  # a listener must never undo or fail an acknowledged update
                log.exception("ref event listener failed")
        return event

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` with every future :class:`RefEvent`; returns an unsubscribe function."""
        self._hooks.listeners.append(listener)
        return lambda: self._hooks.listeners.remove(listener)

    def set_head(self, target: str) -> None:
        with self._write_lock:
            previous = self.refs.read_symref("HEAD")
            self.refs.set_symref("HEAD", target)
            try:
                self.backend.commit_refs({}, self.refs.symrefs(), [])
            except Exception:
                if previous is not None:
                    self.refs.set_symref("HEAD", previous)
                raise

    @classmethod
    def restore(cls, name: str, backend: Backend) -> Repository:
        """A repository filled from what ``backend`` persisted (packs are not re-inflated)."""
        repo = cls(name, backend)
        snap = backend.load()
        for pack in snap.packs:
            repo.objects.add_pack(pack)
        repo.refs.load(snap.refs, snap.symrefs, snap.reflogs)
        return repo
