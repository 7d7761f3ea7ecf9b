"""Typed storage failures; callers branch on the class, never on message text."""

from __future__ import annotations


class StorageError(Exception):
    """Base of every storage failure."""


class StorageUnavailable(StorageError):
    """The durable store cannot be reached right now (a database down or restarting): nothing
    was changed, and the same request may succeed later."""


class ObjectNotFound(StorageError, KeyError):
    """An object id the store does not hold."""

    def __init__(self, oid: bytes) -> None:
        super().__init__(oid)
        self.oid = oid

    def __str__(self) -> str:
        return f"object {self.oid.decode(errors='replace')} not found"


class CorruptObject(StorageError):
    """Stored or received object data that cannot be decoded."""


class RefError(StorageError):
    """Base of ref update failures; ``name`` is the ref that failed."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


class InvalidRefName(RefError):
    """A name that ``git check-ref-format`` would reject."""

    def __init__(self, name: str) -> None:
        super().__init__(name, f"invalid ref name {name!r}")


class StaleRef(RefError):
    """Compare-and-swap failed: the ref is not at the value the caller expected."""

    def __init__(self, name: str, expected: bytes | None, actual: bytes | None) -> None:
        exp = (expected or b"(none)").decode()
        act = (actual or b"(none)").decode()
        super().__init__(name, f"cannot lock ref '{name}': is at {act} but expected {exp}")
        self.expected = expected
        self.actual = actual


class RefDirectoryConflict(RefError):
    """``refs/heads/a`` and ``refs/heads/a/b`` cannot both exist (git's D/F conflict)."""

    def __init__(self, name: str, existing: str) -> None:
        super().__init__(name, f"cannot lock ref '{name}': '{existing}' exists; "
                         f"cannot create '{name}'")
        self.existing = existing


class RefConflict(RefError):
    """The same ref named twice in one transaction."""
