"""A repository: an object store, a ref store and the one path every ref update takes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, overload

from govc.reality import Reality
from govc.timetravel import Snapshot
from govc.transaction import Overlay, Transaction
from govc.trees import Commit, Entry, Identity, TreeReader, load_commit, serialize_commit
from govc.validation import Change, ConflictError, RegisteredValidator, run_validators
from govc.watch import Event, Watcher
from storage.disk import pack_from_objects
from storage.errors import StaleRef
from storage.graph import ObjectGraph, object_links
from storage.interfaces import Backend, MemoryBackend, ReflogEntry, RefUpdate
from storage.objects import MemoryObjectStore
from storage.packs import OBJ_COMMIT, StoredPack, index_pack
from storage.refs import MemoryRefStore

if TYPE_CHECKING:
    from govc.follow import Follower, PublishResult

log = logging.getLogger("govc.repository")


class RefChange(NamedTuple):
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
    id: int | None = None  # position in the durable event log (None: not logged on disk)

    def record(self) -> dict[str, object]:
        """The event as the event log, SSE streams and webhooks carry it."""
        return {
            "repository": self.repository,
            "changes": [{"ref": c.name, "old": (c.old or b"0" * 40).decode(),
                         "new": (c.new or b"0" * 40).decode()} for c in self.changes],
            "who": self.who, "message": self.message, "source": self.source,
            "push_options": list(self.push_options), "time": self.time,
        }


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
        self.trees = TreeReader(self.objects)
        #: Where hook executables are looked up (``<hooks_dir>/<name>/<hook>``), and the
        #: repository's directory on disk; both None for a repository held only in memory.
        self.hooks_dir: Path | None = None
        self.repo_dir: Path | None = None
        #: Protected-ref rules that apply to pushes (govc.protection); a registry supplies them.
        self.protection_rules: Callable[[], list[Any]] = list
        self.validators: list[RegisteredValidator] = []
        self.watchers: list[Watcher] = []
        self._event_lock = threading.RLock()
        #: Where durably logged events go instead of straight to the listeners: a cluster node
        #: (govc.cluster) hands every node's events to the listeners itself, in the shared log's
        #: order, so local and remote updates reach watchers in one commit order.
        self.announce: Callable[[RefEvent], None] | None = None
        #: The newest event of a shared log that the state loaded by :meth:`restore` reflects
        #: (None: not known), so a node following the log does not apply those changes twice.
        self.loaded_event: int | None = None

    def __repr__(self) -> str:
        return f"<Repository {self.name or '(unnamed)'}: {len(self.refs)} refs, {len(self.objects)} objects>"

    @classmethod
    def open(cls, path: str | os.PathLike[str], name: str = "default") -> Repository:
        """A durable repository: ``name`` in the data directory at ``path`` (created if needed)."""
        from storage.disk import DataDirectory

        directory = DataDirectory(Path(path))
        directory.create_repo(name)
        return cls.restore(name, directory.backend(name))

    # -- objects -----------------------------------------------------------------------------

    def add_pack(self, pack: StoredPack) -> None:
        """Make a checked pack's objects visible (durable first, then in memory)."""
        self.backend.store_pack(pack)
        self.objects.add_pack(pack)

    @property
    def durable(self) -> bool:
        return type(self.backend) is not MemoryBackend

    def write_objects(self, objects: Sequence[tuple[int, bytes]], *, ephemeral: bool = False) -> None:
        """Store objects the API made: as one durable pack, or (memory repositories, ephemeral
        realities) as compressed records in memory."""
        if not objects:
            return
        if not self.durable or ephemeral:
            for type_num, content in objects:
                self.objects.add_object(type_num, content)
            return
        self.add_pack(index_pack(pack_from_objects(objects)))

    def _persist_loose_closure(self, tips: Iterable[bytes]) -> None:
        """Before a durable ref points at objects only held in memory (an ephemeral reality
        merged into a branch), write them as a pack."""
        found: list[tuple[int, bytes]] = []
        seen: set[bytes] = set()
        stack = [t for t in tips if t is not None]
        while stack:
            oid = stack.pop()
            if oid in seen or not self.objects.is_loose(oid):
                continue
            seen.add(oid)
            type_num, content = self.objects.get(oid)
            found.append((type_num, content))
            stack.extend(object_links(type_num, content))
        if found:
            self.add_pack(index_pack(pack_from_objects(found)))

    def trees_for(self, objects: object) -> TreeReader:
        """A tree reader over another object view (a transaction's overlay) that still shares
        this repository's cache for every tree the view did not make itself."""
        return _OverlayTrees(objects, self.trees)

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
        objects: Sequence[tuple[int, bytes]] = (),
    ) -> RefEvent:
        """Apply ``updates`` atomically (all or none) and announce them as one event.

        Raises :class:`storage.errors.RefError` subclasses for stale values, bad names and
        directory/file conflicts; nothing changes then. ``ephemeral=True`` creates refs under
        :attr:`ephemeral_namespace` that live in memory only: they, their later updates and
        their events never reach the backend. ``objects`` (new objects the updates need) are
        stored only once the compare-and-swap has passed, before any ref moves.
        """
        options = tuple(push_options)
        if ephemeral:
            outside = [u.name for u in updates if not u.name.startswith(self.ephemeral_namespace)]
            if outside:
                raise ValueError(f"ephemeral refs must be under {self.ephemeral_namespace}: {outside}")

        def persist(changes: Mapping[str, bytes | None], reflog: Sequence[tuple[str, ReflogEntry]]) -> None:
            kept = {n: v for n, v in changes.items() if not ephemeral and n not in self.ephemeral_refs}
            self.write_objects(objects, ephemeral=not kept)
            if not kept:
                return
            if not self.durable:
                return  # nothing to record: building the event record would be wasted work
            self._persist_loose_closure(v for v in kept.values() if v is not None)
            log_kept = [(n, e) for n, e in reflog if n in kept]
            record = json.dumps({
                "repository": self.name,
                "changes": [{"ref": n, "old": e.old.decode(), "new": e.new.decode()} for n, e in log_kept],
                "who": who, "message": message, "source": source,
                "push_options": list(options), "time": log_kept[0][1].when,
            })
            logged[0] = self.backend.commit_refs(kept, self.refs.symrefs(), log_kept, record)

        logged: list[int | None] = [None]
        with self._event_lock:  # events leave in the order the refs moved
            plan = self.refs.update(updates, who=who, message=message, persist=persist)
            for name, _old, new_value in plan:
                if ephemeral and new_value is not None:
                    self.ephemeral_refs.add(name)
                elif new_value is None:
                    self.ephemeral_refs.discard(name)
            event = RefEvent(
                self.name,
                tuple(RefChange(n, o, w) for n, o, w in plan),
                who, message, source, time.time(), options, logged[0],
            )
            if event.id is not None and self.announce is not None:
                self.announce(event)
            else:
                self.notify_listeners(event)
        return event

    def notify_listeners(self, event: RefEvent) -> None:
        """Hand ``event`` to every listener, in the order events are announced."""
        with self._event_lock:
            for listener in list(self._hooks.listeners):
                try:
                    listener(event)
                except Exception:  # a listener must never undo or fail an acknowledged update
                    log.exception("ref event listener failed")

    @overload
    def subscribe(self, listener: Listener) -> Callable[[], None]: ...

    @overload
    def subscribe(self, listener: str, reality: str, **options: Any) -> Follower: ...

    def subscribe(self, listener: Listener | str, reality: str | None = None,
                  **options: Any) -> Callable[[], None] | Follower:
        """Two kinds of subscription, told apart by the arguments.

        ``subscribe(listener)``: call ``listener`` with every future :class:`RefEvent` of this
        repository; returns an unsubscribe function (safe to call more than once).

        ``subscribe(url, reality, **options)``: keep the local reality in step with ``reality`` on
        the govc server at ``url`` (a repository URL); returns the running
        :class:`govc.follow.Follower` (``close()`` it, or use it as a context manager). Options are
        :class:`~govc.follow.Follower`'s: ``local``, ``token``, ``remote_name``, ``poll``, ``ephemeral``,
        ``on_update``, ``on_conflict``, ``start``.
        """
        if isinstance(listener, str):
            if reality is None:
                raise TypeError("subscribe(url, reality): name the reality to follow")
            from govc.follow import Follower

            return Follower(self, listener, reality, **options)
        if reality is not None or options:
            raise TypeError("subscribe(listener) takes a single callable")
        self._hooks.listeners.append(listener)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._hooks.listeners.remove(listener)

        return unsubscribe

    def publish(self, url: str, reality: str = "main", *, remote_ref: str | None = None,
                token: str | None = None, force: bool = False) -> PublishResult:
        """Push the local reality to the govc (or any Git smart-HTTP) server at ``url``: a
        fast-forward with compare-and-swap on the remote's current value. A remote with commits
        this reality lacks, or one that moves meanwhile, raises :class:`govc.follow.PublishConflict`
        (``force=True`` replaces it anyway). See :func:`govc.follow.publish`."""
        from govc.follow import publish

        return publish(self, url, reality, remote_ref=remote_ref, token=token, force=force)

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
        repo.loaded_event = snap.event_id
        return repo

    # -- the Python API ------------------------------------------------------------------------

    def resolve_reality_ref(self, name: str) -> str:
        """A short name as a ref: an existing branch, else an existing reality, else a branch."""
        if name.startswith("refs/"):
            return name
        for candidate in (f"refs/heads/{name}", f"{self.ephemeral_namespace}{name}"):
            if self.refs.get(candidate) is not None:
                return candidate
        return f"refs/heads/{name}"

    def reality(self, name: str) -> Reality:
        """A handle on any branch or reality (``"main"``, ``"canary"``)."""
        ref = self.resolve_reality_ref(name)
        return Reality(self, ref, ephemeral=ref in self.ephemeral_refs)

    def parallel_realities(
        self, names: Sequence[str], *, base: str = "main", ephemeral: bool = False,
    ) -> list[Reality]:
        """Create realities (``refs/realities/<name>``) at ``base``'s tip, all in one atomic update."""
        refs = list(dict.fromkeys(f"{self.ephemeral_namespace}{n}" for n in names))
        start = self.refs.get(self.resolve_reality_ref(base))
        with self._event_lock:  # check-then-create without racing other creators
            if ephemeral:
                # Marked before creation so that a reality on an empty base stays in memory
                # when its first commit creates the ref.
                self.ephemeral_refs.update(r for r in refs if self.refs.get(r) is None)
            missing = [r for r in refs if self.refs.get(r) is None]
            if missing and start is not None:
                self.update_refs([RefUpdate(r, start, None) for r in missing], who="govc",
                                 message=f"reality from {base}", source="api", ephemeral=ephemeral)
        return [Reality(self, r, ephemeral=r in self.ephemeral_refs) for r in refs]

    def parallel_reality(self, name: str, *, base: str = "main", ephemeral: bool = False) -> Reality:
        return self.parallel_realities([name], base=base, ephemeral=ephemeral)[0]

    def transaction(
        self, branch: str | Sequence[str] = "main", *, author: str | None = None, rebase: bool = False,
    ) -> Transaction:
        """Stage changes on one or more branches/realities and commit them atomically."""
        names = [branch] if isinstance(branch, str) else list(branch)
        refs = [self.resolve_reality_ref(n) for n in names]
        return Transaction(self, refs, author=author, rebase=rebase,
                           ephemeral=bool(refs) and all(r in self.ephemeral_refs for r in refs))

    def set_main(self, reality: Reality | str, *, branch: str = "main") -> Commit:
        """Promote: move ``branch`` to the reality's tip by compare-and-swap, once the
        validators agree. Like ``git reset``, commits on ``branch`` that the reality lacks leave
        it (the reflog and time travel still reach them); merge first to keep them."""
        source = reality if isinstance(reality, Reality) else self.reality(reality)
        tip = source.head
        if tip is None:
            raise KeyError(f"{source.name} has no commits")
        ref = self.resolve_reality_ref(branch)
        current = self.refs.get(ref)
        run_validators(self.validators, Change(ref, current, tip, "api", self.objects, self.trees))
        try:
            self.update_refs([RefUpdate(ref, tip, current)], who="govc",
                             message=f"promote {source.name}", source="api")
        except StaleRef as e:
            raise ConflictError(f"{branch} moved during the promotion") from e
        return load_commit(self.objects, tip)

    def merge(
        self, reality: Reality | str, *, into: str = "main", author: str | None = None,
        message: str | None = None,
    ) -> MergeOutcome:
        """A real three-way merge of the reality into ``into``: fast-forward when possible, else
        a two-parent commit; conflicts come back as data and nothing is written."""
        from govc.merge import merge_commits

        source = reality if isinstance(reality, Reality) else self.reality(reality)
        theirs = source.head
        target = self.resolve_reality_ref(into)
        ours = self.refs.get(target)
        if theirs is None:
            raise KeyError(f"{source.name} has no commits")
        if ours is None:
            self.update_refs([RefUpdate(target, theirs, None)], who="govc", message="merge",
                             source="merge")
            return MergeOutcome(load_commit(self.objects, theirs), (), fast_forward=True)
        overlay = Overlay(self)
        result = merge_commits(overlay, self.graph, ours, theirs, labels=(into, source.name))
        if result.conflicts:
            return MergeOutcome(None, tuple(result.conflicts))
        if result.fast_forward:
            new = theirs
        elif result.tree == self.graph.commit(ours).tree and self.graph.ancestors([ours]) >= {theirs}:
            return MergeOutcome(load_commit(self.objects, ours), (), up_to_date=True)
        else:
            ident = Identity.parse(author or "govc <govc@govc.invalid>")
            raw = serialize_commit(result.tree, [ours, theirs], ident, ident, int(time.time()),
                                   message or f"Merge {source.name} into {into}")
            new = overlay.add_object(OBJ_COMMIT, raw)
        proposal = Change(target, ours, new, "merge", overlay, self.trees_for(overlay))
        run_validators(self.validators, proposal)
        try:
            self.update_refs([RefUpdate(target, new, ours)], who=author or "govc",
                             message=f"merge {source.name}", source="merge",
                             objects=list(overlay.pending.values()))
        except StaleRef as e:
            raise ConflictError(f"{into} moved during the merge") from e
        return MergeOutcome(load_commit(self.objects, new), (), fast_forward=result.fast_forward)

    async def merge_async(self, reality: Reality | str, *, into: str = "main", author: str | None = None,
                          message: str | None = None) -> MergeOutcome:
        """:meth:`merge` on a worker thread (for asyncio code)."""
        return await asyncio.to_thread(self.merge, reality, into=into, author=author, message=message)

    def time_travel(self, when: datetime | float | int) -> Snapshot:
        """Refs, trees and files as they were at ``when`` (a datetime or epoch seconds)."""
        return Snapshot(self, when)

    def watch(
        self, fn: Callable[[Event], object] | None = None, *, paths: str | Sequence[str] | None = None,
        branches: str | Sequence[str] | None = None,
    ) -> Any:
        """Register a watcher (usable as ``@repo.watch`` or ``@repo.watch(paths="*.tf")``).

        Returns the :class:`Watcher`; ``watcher.close()`` removes it."""
        def register(callback: Callable[[Event], object]) -> Watcher:
            watcher = Watcher(self, callback, paths=paths, branches=branches)
            self.watchers.append(watcher)
            return watcher

        return register(fn) if fn is not None else register

    def unwatch(self, watcher: Watcher) -> None:
        watcher.close()

    def validator(
        self, fn: Callable[[Change], object] | None = None, *, branches: str | None = None,
        name: str | None = None,
    ) -> Any:
        """Register a validator (``@repo.validator`` or ``@repo.validator(branches="main")``)
        that can veto API commits, merges and git pushes by raising :class:`ValidationError`.
        ``name`` (default: the function's name) is what a protected-branch rule's required
        validators refer to."""
        def register(callback: Callable[[Change], object]) -> Callable[[Change], object]:
            label = name or getattr(callback, "__name__", "validator")
            self.validators.append(RegisteredValidator(callback, branches, label))
            return callback

        return register(fn) if fn is not None else register

    def branches(self) -> list[str]:
        return [n.removeprefix("refs/heads/") for n, _ in self.refs.items() if n.startswith("refs/heads/")]

    def realities(self) -> list[Reality]:
        return [Reality(self, n, ephemeral=n in self.ephemeral_refs) for n, _ in self.refs.items()
                if n.startswith(self.ephemeral_namespace)]

    def log(self, branch: str = "main", limit: int | None = None) -> list[Commit]:
        """First-parent history of a branch, newest first."""
        out: list[Commit] = []
        tip = self.refs.get(self.resolve_reality_ref(branch))
        while tip is not None and (limit is None or len(out) < limit):
            commit = load_commit(self.objects, tip)
            out.append(commit)
            tip = commit.parents[0].encode() if commit.parents else None
        return out


class _OverlayTrees(TreeReader):
    def __init__(self, objects: object, shared: TreeReader) -> None:
        super().__init__(objects, capacity=256)  # type: ignore[arg-type]
        self._shared = shared
        self._pending: dict[bytes, object] = getattr(objects, "pending", {})  # a transaction's

    def entries(self, tree: bytes) -> dict[bytes, Entry]:
        hit = self._shared.cached(tree)
        if hit is not None:
            return hit
        if tree in self._pending or not self._shared.objects.has(tree):
            return super().entries(tree)  # made by the transaction, or still in quarantine
        return self._shared.entries(tree)


@dataclass(frozen=True)
class MergeOutcome:
    """What :meth:`Repository.merge` did: the resulting commit, or the conflicts (nothing written)."""

    commit: Commit | None
    conflicts: tuple[Any, ...]
    fast_forward: bool = False
    up_to_date: bool = False

    @property
    def clean(self) -> bool:
        return not self.conflicts
