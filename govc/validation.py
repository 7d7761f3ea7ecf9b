"""Validators: Python callables that can veto a ref update before it happens, whether it comes
from an API transaction or a ``git push`` (for which they act as git's ``update`` hook)."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from govc.trees import Commit, FileChange, TreeReader, load_commit

if TYPE_CHECKING:
    from govc.trees import Objects


class ValidationError(Exception):
    """Raised by a validator to refuse a change; the message reaches git users as the reason."""


class ConflictError(Exception):
    """A transaction's branch moved since it began (and could not be rebased)."""


@dataclass
class Change:
    """A proposed move of one ref, as validators see it; file contents are read on demand."""

    ref: str
    old: bytes | None
    new: bytes | None
    source: str
    objects: Objects = field(repr=False)
    trees: TreeReader = field(repr=False)

    @property
    def branch(self) -> str:
        """The short name: ``main`` for ``refs/heads/main``, ``canary`` for ``refs/realities/canary``."""
        for prefix in ("refs/heads/", "refs/realities/", "refs/tags/"):
            if self.ref.startswith(prefix):
                return self.ref[len(prefix):]
        return self.ref

    def _tree(self, oid: bytes | None) -> bytes | None:
        if oid is None:
            return None
        type_num, _ = self.objects.get(oid)
        return load_commit(self.objects, oid).tree.encode() if type_num == 1 else None

    @cached_property
    def changed(self) -> list[FileChange]:
        return list(self.trees.diff(self._tree(self.old), self._tree(self.new)))

    @property
    def paths(self) -> list[str]:
        return [c.path for c in self.changed]

    @cached_property
    def files(self) -> dict[str, bytes | None]:
        """``{path: new content}`` of every changed file (None for a removed one)."""
        out: dict[str, bytes | None] = {}
        for c in self.changed:
            out[c.path] = None if c.new is None else self.objects.get(c.new.oid)[1]
        return out

    def matching(self, pattern: str) -> Iterator[FileChange]:
        return (c for c in self.changed if c.matches(pattern))

    @property
    def commit(self) -> Commit | None:
        return load_commit(self.objects, self.new) if self.new is not None and self._tree(self.new) else None


Validator = Callable[[Change], object]


@dataclass(frozen=True)
class RegisteredValidator:
    fn: Validator
    branches: str | None = None  # glob on the short branch name
    name: str = ""

    def applies(self, change: Change) -> bool:
        return self.branches is None or fnmatch.fnmatchcase(change.branch, self.branches)


def run_validators(validators: list[RegisteredValidator], change: Change) -> None:
    """Raise the first :class:`ValidationError` (any other exception counts as a refusal too:
    a validator that crashes must not let a change through)."""
    for v in validators:
        if not v.applies(change):
            continue
        try:
            v.fn(change)
        except ValidationError:
            raise
        except Exception as e:
            raise ValidationError(f"validator {getattr(v.fn, '__name__', v.fn)!s} failed: {e}") from e
