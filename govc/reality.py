"""Realities: handles on refs — any branch, or a cheap isolated one under ``refs/realities/``."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from govc.trees import Commit, load_commit

if TYPE_CHECKING:
    from govc.repository import Repository
    from govc.transaction import Transaction


class Reality:
    """One ref seen as a state of the world: read files at its tip, apply changes to it."""

    __slots__ = ("ephemeral", "name", "ref", "repo")

    def __init__(self, repo: Repository, ref: str, *, ephemeral: bool = False) -> None:
        self.repo = repo
        self.ref = ref
        self.name = ref.removeprefix("refs/heads/").removeprefix(repo.ephemeral_namespace)
        self.ephemeral = ephemeral

    def __repr__(self) -> str:
        tip = self.head
        return f"<Reality {self.name} ({self.ref}) at {tip.decode()[:12] if tip else 'nothing'}>"

    @property
    def head(self) -> bytes | None:
        """The commit id the reality points at (None before its first commit)."""
        return self.repo.refs.get(self.ref)

    @property
    def commit(self) -> Commit | None:
        tip = self.head
        return load_commit(self.repo.objects, tip) if tip is not None else None

    def read(self, path: str) -> bytes:
        """The file's bytes at the tip; KeyError if it does not exist."""
        tip = self.head
        if tip is None:
            raise KeyError(path)
        return self.repo.trees.read(self.repo.graph.commit(tip).tree, path)

    def exists(self, path: str) -> bool:
        try:
            self.read(path)
        except KeyError:
            return False
        return True

    def files(self) -> Iterator[str]:
        """Every file path at the tip, in tree order."""
        tip = self.head
        if tip is not None:
            for path, _entry in self.repo.trees.walk(self.repo.graph.commit(tip).tree):
                yield path

    def transaction(self, *, author: str | None = None, rebase: bool = False) -> Transaction:
        return self.repo.transaction(self.ref, author=author, rebase=rebase)

    def apply(
        self, changes: Mapping[str, str | bytes | None], message: str | None = None, *,
        author: str | None = None,
    ) -> Commit:
        """One commit on this reality: each path set to new content, or removed when None."""
        with self.transaction(author=author) as tx:
            for path, data in changes.items():
                if data is None:
                    tx.remove(path)
                else:
                    tx.write(path, data)
            return tx.commit(message or f"apply {', '.join(sorted(changes))}")

    async def apply_async(
        self, changes: Mapping[str, str | bytes | None], message: str | None = None, *,
        author: str | None = None,
    ) -> Commit:
        """:meth:`apply` on a worker thread (for asyncio code)."""
        return await asyncio.to_thread(self.apply, changes, message, author=author)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Reality) and other.repo is self.repo and other.ref == self.ref

    def __hash__(self) -> int:
        return hash((id(self.repo), self.ref))
