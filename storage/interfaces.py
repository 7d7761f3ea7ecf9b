"""The storage roles, each as one small interface (``typing.Protocol``).

Object ids are 40-byte lowercase hex ``bytes`` throughout, as on the wire and in dulwich. Ref names
are ``str``. A compare-and-swap that fails raises :class:`storage.errors.StaleRef`; it never returns a
flag to be ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, NamedTuple, Protocol, runtime_checkable

if TYPE_CHECKING:
    from storage.packs import StoredPack

Oid = bytes
ZERO_OID: Final = b"0" * 40


class _Any:
    """Sentinel: a ref update that does not check the ref's current value."""

    def __repr__(self) -> str:
        return "ANY"


ANY: Final = _Any()


class RefUpdate(NamedTuple):
    """Move ``name`` from ``old`` to ``new``.

    ``old`` is the value the ref must have (``None``: must not exist; ``ANY``: not checked);
    ``new`` is ``None`` to delete the ref. (A named tuple: thousands are made per bulk update.)
    """

    name: str
    new: Oid | None
    old: Oid | _Any | None = ANY


class ReflogEntry(NamedTuple):
    old: Oid
    new: Oid
    who: str
    when: float
    message: str


@runtime_checkable
class ObjectStore(Protocol):
    def has(self, oid: Oid) -> bool: ...

    def get(self, oid: Oid) -> tuple[int, bytes]:
        """Type number and raw content; raises ``ObjectNotFound``."""
        ...

    def type_of(self, oid: Oid) -> int: ...

    def add_object(self, type_num: int, data: bytes) -> Oid: ...

    def add_pack(self, pack: StoredPack) -> None: ...

    def __len__(self) -> int: ...


@runtime_checkable
class RefStore(Protocol):
    def get(self, name: str) -> Oid | None:
        """The ref's value; symbolic refs are followed."""
        ...

    def read_symref(self, name: str) -> str | None: ...

    def set_symref(self, name: str, target: str) -> None: ...

    def list(self, prefix: str = "") -> dict[str, Oid]: ...

    def update(self, updates: Sequence[RefUpdate], who: str, message: str) -> None:
        """Apply all updates or none (atomic compare-and-swap)."""
        ...

    def reflog(self, name: str) -> list[ReflogEntry]: ...


@dataclass(slots=True)
class Snapshot:
    """Everything a backend hands back at start-up to refill the in-memory stores."""

    packs: list[StoredPack] = field(default_factory=list)
    loose: list[tuple[int, bytes]] = field(default_factory=list)
    refs: dict[str, Oid] = field(default_factory=dict)
    symrefs: dict[str, str] = field(default_factory=dict)
    reflogs: dict[str, list[ReflogEntry]] = field(default_factory=dict)
    #: The newest event of the durable log the snapshot already reflects, when the backend knows
    #: it (a node following a shared log skips the ref changes of events up to it).
    event_id: int | None = None


@runtime_checkable
class Backend(Protocol):
    """Durable storage beneath one repository's in-memory stores.

    The write order is the contract: objects are made durable (``store_pack`` / ``store_objects``)
    before the ref transaction that makes them reachable (``commit_refs``) returns; a backend that
    acknowledges ``commit_refs`` must keep it across a crash.
    """

    def load(self) -> Snapshot: ...

    def store_pack(self, pack: StoredPack) -> None: ...

    def store_objects(self, objects: Iterable[tuple[int, bytes]]) -> None: ...

    def commit_refs(
        self,
        updates: Mapping[str, Oid | None],
        symrefs: Mapping[str, str],
        reflog: Iterable[tuple[str, ReflogEntry]],
        event: str | None = None,
    ) -> int | None:
        """Record ref changes, the symbolic refs, reflog entries and the event (JSON) in one
        atomic, durable step; raise (changing nothing) on failure. Returns the event's id in
        the durable event log (None when nothing keeps one)."""
        ...

    def remove_packs(self, packs: Iterable[StoredPack]) -> None: ...


class MemoryBackend:
    """The pure-memory default: nothing to load, nothing kept."""

    def load(self) -> Snapshot:
        return Snapshot()

    def store_pack(self, pack: StoredPack) -> None:
        pass

    def store_objects(self, objects: Iterable[tuple[int, bytes]]) -> None:
        pass

    def commit_refs(
        self,
        updates: Mapping[str, Oid | None],
        symrefs: Mapping[str, str],
        reflog: Iterable[tuple[str, ReflogEntry]],
        event: str | None = None,
    ) -> int | None:
        return None

    def remove_packs(self, packs: Iterable[StoredPack]) -> None:
        pass


