"""Transactions: stage file changes on one or more refs, validate, commit atomically.

Nothing a transaction builds is visible before :meth:`Transaction.commit`: new blobs, trees and
commits live in the transaction's own overlay until the refs move, all together, by
compare-and-swap. If a ref moved meanwhile the commit fails with :class:`ConflictError` — or,
with ``rebase=True``, is replayed on the new tip when none of its paths changed there.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from govc.trees import (
    MODE_FILE,
    Commit,
    Identity,
    build_tree,
    load_commit,
    serialize_commit,
)
from govc.validation import Change, ConflictError, run_validators
from storage.errors import StaleRef
from storage.interfaces import RefUpdate
from storage.packs import OBJ_BLOB, OBJ_COMMIT, object_id

if TYPE_CHECKING:
    from govc.repository import Repository

MAX_REBASES = 200


class Overlay:
    """The repository's objects plus those a transaction has made but not yet written."""

    def __init__(self, repo: Repository) -> None:
        self.repo = repo
        self.pending: dict[bytes, tuple[int, bytes]] = {}

    def add_object(self, type_num: int, content: bytes) -> bytes:
        oid = object_id(type_num, content)
        if oid not in self.pending and not self.repo.objects.has(oid):
            self.pending[oid] = (type_num, content)
        return oid

    def get(self, oid: bytes) -> tuple[int, bytes]:
        hit = self.pending.get(oid)
        return hit if hit is not None else self.repo.objects.get(oid)

    def has(self, oid: bytes) -> bool:
        return oid in self.pending or self.repo.objects.has(oid)

    def type_of(self, oid: bytes) -> int:
        hit = self.pending.get(oid)
        return hit[0] if hit is not None else self.repo.objects.type_of(oid)


def full_ref(name: str) -> str:
    """``main`` -> ``refs/heads/main``; full names pass through."""
    return name if name.startswith("refs/") else f"refs/heads/{name}"


@dataclass
class _Stage:
    ref: str
    base: bytes | None
    files: dict[str, tuple[bytes, int] | None] = field(default_factory=dict)


class Transaction:
    """See the module docstring. Use as a context manager: an exception inside rolls back."""

    def __init__(
        self,
        repo: Repository,
        refs: str | Sequence[str],
        *,
        author: str | None = None,
        rebase: bool = False,
        ephemeral: bool = False,
    ) -> None:
        self.repo = repo
        names = [refs] if isinstance(refs, str) else list(refs)
        if not names:
            raise ValueError("a transaction needs at least one ref")
        self.author = Identity.parse(author or "govc <govc@govc.invalid>")
        self.rebase = rebase
        self.ephemeral = ephemeral
        self._stages = {}
        for name in names:
            ref = repo.resolve_reality_ref(name)
            self._stages[ref] = _Stage(ref, repo.refs.get(ref))
        self._default = next(iter(self._stages))
        self._overlay = Overlay(repo)
        self.committed: dict[str, Commit] = {}
        self._closed = False

    # -- staging ---------------------------------------------------------------------------

    def _stage(self, branch: str | None) -> _Stage:
        if self._closed:
            raise RuntimeError("this transaction is finished")
        if branch is None:
            return self._stages[self._default]
        ref = self.repo.resolve_reality_ref(branch)
        if ref not in self._stages:
            raise KeyError(f"{branch} is not part of this transaction")
        return self._stages[ref]

    def write(
        self, path: str, data: str | bytes, *, mode: int = MODE_FILE, branch: str | None = None
    ) -> None:
        """Stage ``path`` with new content (``str`` is written as UTF-8)."""
        content = data.encode() if isinstance(data, str) else bytes(data)
        stage = self._stage(branch)
        oid = self._overlay.add_object(OBJ_BLOB, content)
        stage.files[path.strip("/")] = (oid, mode)

    def remove(self, path: str, *, branch: str | None = None) -> None:
        stage = self._stage(branch)
        if not self.exists(path, branch=branch):
            raise KeyError(path)
        stage.files[path.strip("/")] = None

    def read(self, path: str, *, branch: str | None = None) -> bytes:
        """The file as this transaction sees it: staged content first, then the base commit."""
        stage = self._stage(branch)
        key = path.strip("/")
        if key in stage.files:
            staged = stage.files[key]
            if staged is None:
                raise KeyError(path)
            return self._overlay.get(staged[0])[1]
        if stage.base is None:
            raise KeyError(path)
        return self.repo.trees.read(self.repo.graph.commit(stage.base).tree, key)

    def base_commit(self, branch: str | None = None) -> bytes | None:
        """The commit the transaction started from on ``branch`` (None: the branch was empty)."""
        return self._stage(branch).base

    def exists(self, path: str, *, branch: str | None = None) -> bool:
        try:
            self.read(path, branch=branch)
        except KeyError:
            return False
        return True

    @property
    def changes(self) -> dict[str, dict[str, bytes | None]]:
        """Staged changes per ref: ``{ref: {path: content or None}}``."""
        return {
            ref: {p: None if v is None else self._overlay.get(v[0])[1] for p, v in st.files.items()}
            for ref, st in self._stages.items()
        }

    # -- building ----------------------------------------------------------------------------

    def _build(self, stage: _Stage, message: str, author: Identity, base: bytes | None) -> bytes:
        base_tree = self.repo.graph.commit(base).tree if base is not None else None
        tree = build_tree(self.repo.trees_for(self._overlay), self._overlay.add_object, base_tree,
                          stage.files)
        parents = [base] if base is not None else []
        raw = serialize_commit(tree, parents, author, author, int(time.time()), message)
        return self._overlay.add_object(OBJ_COMMIT, raw)

    def _proposals(self, message: str, author: Identity) -> dict[str, bytes]:
        return {ref: self._build(st, message, author, st.base)
                for ref, st in self._stages.items() if st.files}

    def _changes_for(self, proposals: Mapping[str, bytes]) -> list[Change]:
        reader = self.repo.trees_for(self._overlay)
        return [Change(ref, self._stages[ref].base, new, "api", self._overlay, reader)
                for ref, new in proposals.items()]

    def validate(self, message: str = "validation") -> None:
        """Run the repository's validators on the staged changes; raises
        :class:`ValidationError` and writes nothing."""
        for change in self._changes_for(self._proposals(message, self.author)):
            run_validators(self.repo.validators, change)

    def commit(self, message: str, *, author: str | None = None) -> Commit:
        """Write the staged changes as one commit per changed ref and move the refs together.

        Returns the commit of the transaction's first ref (all are in :attr:`committed`).
        """
        ident = Identity.parse(author) if author else self.author
        for _attempt in range(MAX_REBASES):
            proposals = self._proposals(message, ident)
            if not proposals:
                raise ValueError("nothing to commit: no file was written or removed")
            for change in self._changes_for(proposals):
                run_validators(self.repo.validators, change)
            updates = [RefUpdate(ref, new, self._stages[ref].base) for ref, new in proposals.items()]
            try:
                # The objects are written inside the ref update, after its compare-and-swap
                # passed and before the refs move: a lost race writes nothing.
                self.repo.update_refs(updates, who=str(ident), message=message, source="api",
                                      ephemeral=self.ephemeral and all(
                                          r.startswith(self.repo.ephemeral_namespace) for r in proposals),
                                      objects=list(self._overlay.pending.values()))
            except StaleRef as e:
                if not self.rebase or not self._rebase_onto_current():
                    raise ConflictError(f"{e.name} moved since the transaction began") from e
                time.sleep(random.random() * 0.001 * _attempt)  # back off under contention
                continue
            self._closed = True
            self.committed = {ref: load_commit(self.repo.objects, oid) for ref, oid in proposals.items()}
            return self.committed[next(iter(proposals))]
        raise ConflictError("gave up rebasing: the refs keep moving")

    async def commit_async(self, message: str, *, author: str | None = None) -> Commit:
        """:meth:`commit` on a worker thread, so an event loop keeps serving meanwhile."""
        return await asyncio.to_thread(self.commit, message, author=author)

    def _rebase_onto_current(self) -> bool:
        """Move every stage's base to its ref's current tip if no staged path changed there."""
        reader = self.repo.trees
        for stage in self._stages.values():
            current = self.repo.refs.get(stage.ref)
            if current == stage.base:
                continue
            old_tree = self.repo.graph.commit(stage.base).tree if stage.base else None
            new_tree = self.repo.graph.commit(current).tree if current else None
            touched = {c.path for c in reader.diff(old_tree, new_tree)}
            if touched & set(stage.files):
                return False
            stage.base = current
        return True

    def rollback(self) -> None:
        for stage in self._stages.values():
            stage.files.clear()
        self._overlay.pending.clear()
        self._closed = True

    def __enter__(self) -> Transaction:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None or not self._closed:
            self.rollback()
