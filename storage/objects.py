"""The in-memory object store: received packs plus an arena of single compressed objects."""

from __future__ import annotations

import threading
from binascii import a2b_hex
from collections.abc import Iterator
from dataclasses import dataclass

from zlib_ng import zlib_ng

from storage.errors import ObjectNotFound
from storage.packs import (
    COMPRESSION_LEVEL,
    DeltaBaseCache,
    ObjectVisitor,
    StoredPack,
    index_pack,
    inflate_exact,
    is_canonical,
    object_id,
    read_pack_object,
)

#: One delta-base cache for the whole process: its bound is a memory budget for the server, not
#: per repository (keys include the pack, so repositories never see each other's entries).
SHARED_DELTA_CACHE = DeltaBaseCache(32 << 20)


@dataclass(frozen=True, slots=True)
class PackedRecord:
    """An object as stored: what a pack writer needs to copy it without recompressing.

    ``size`` and ``compressed`` describe the stored data, which for a delta is the delta itself;
    ``base`` is then the delta base's object id.
    """

    type_num: int
    size: int
    compressed: bytes | memoryview
    base: bytes | None


class MemoryObjectStore:
    """Genuine Git objects, kept compressed: packs as received, new objects zlib-compressed.

    Lookups go newest pack first, since fetches mostly ask for recent objects.
    """

    def __init__(self) -> None:
        self._packs: list[StoredPack] = []
        self._loose: dict[bytes, tuple[int, int, bytes]] = {}  # oid -> (type, size, zlib data)
        self._cache = SHARED_DELTA_CACHE
        self._lock = threading.Lock()

    # -- reading -----------------------------------------------------------------------------

    def _locate(self, oid: bytes) -> tuple[StoredPack, int] | None:
        # StoredPack.position, with the id converted once for every pack: the hottest lookup.
        try:
            raw = a2b_hex(oid)
            prefix = int(oid[:8], 16)
        except (ValueError, TypeError):
            return None
        for pack in reversed(self._packs):
            pos = pack.find(prefix, raw)
            if pos is not None:
                return (pack, pos) if is_canonical(oid) else None
        return None

    def has(self, oid: bytes) -> bool:
        return oid in self._loose or self._locate(oid) is not None

    __contains__ = has

    def get(self, oid: bytes) -> tuple[int, bytes]:
        loose = self._loose.get(oid)
        if loose is not None:
            type_num, size, zdata = loose
            return type_num, inflate_exact(zdata, size)
        found = self._locate(oid)
        if found is None:
            raise ObjectNotFound(oid)
        pack, pos = found
        return read_pack_object(pack, pos, self._cache, self.get)

    def type_of(self, oid: bytes) -> int:
        loose = self._loose.get(oid)
        if loose is not None:
            return loose[0]
        found = self._locate(oid)
        if found is None:
            raise ObjectNotFound(oid)
        pack, pos = found
        return pack.types[pos]

    def is_loose(self, oid: bytes) -> bool:
        """Held only as a compressed record in memory (in no pack)?"""
        return oid in self._loose and self._locate(oid) is None

    def size_of(self, oid: bytes) -> int:
        """Inflated size, known without inflating (recorded when the object arrived)."""
        loose = self._loose.get(oid)
        if loose is not None:
            return loose[1]
        found = self._locate(oid)
        if found is None:
            raise ObjectNotFound(oid)
        pack, pos = found
        return pack.sizes[pos]

    def packed_record(self, oid: bytes) -> PackedRecord:
        loose = self._loose.get(oid)
        if loose is not None:
            return PackedRecord(loose[0], loose[1], loose[2], None)
        found = self._locate(oid)
        if found is None:
            raise ObjectNotFound(oid)
        pack, pos = found
        h = pack.header(pos)
        return PackedRecord(pack.types[pos], h.size, pack.compressed(pos, h), pack.base_oid(h))

    def __len__(self) -> int:
        return len(self._loose) + sum(len(p) for p in self._packs)

    def iter_oids(self) -> Iterator[bytes]:
        yield from self._loose
        for pack in self._packs:
            yield from pack.iter_oids()

    @property
    def packs(self) -> list[StoredPack]:
        return list(self._packs)

    # -- writing -----------------------------------------------------------------------------

    def index_pack(self, data: bytes, on_object: ObjectVisitor | None = None) -> StoredPack:
        """Index (and complete, if thin) a pack against this store without adding it."""
        return index_pack(data, self.get, on_object)

    def add_pack(self, pack: StoredPack) -> None:
        with self._lock:
            self._packs = [*self._packs, pack]

    def replace_packs(self, old: list[StoredPack], new: StoredPack) -> None:
        """Swap packs for one that holds all their objects (compaction). Readers that already
        hold an old pack keep reading it; later lookups find the objects in ``new``, which goes
        first in age so that packs added meanwhile still win the newest-first lookup."""
        gone = {id(p) for p in old}
        with self._lock:
            self._packs = [new, *(p for p in self._packs if id(p) not in gone)]

    def drop_packs(self, old: list[StoredPack]) -> None:
        """Forget packs whose objects are all in other packs held here (another node compacted
        them). Readers that already hold one keep reading it."""
        gone = {id(p) for p in old}
        with self._lock:
            self._packs = [p for p in self._packs if id(p) not in gone]

    def add_object(self, type_num: int, data: bytes) -> bytes:
        oid = object_id(type_num, data)
        if not self.has(oid):
            self._loose[oid] = (type_num, len(data), zlib_ng.compress(data, COMPRESSION_LEVEL))
        return oid

    def add_compressed(self, oid: bytes, type_num: int, size: int, zdata: bytes) -> None:
        """Adopt an already compressed object (a backend reloading its arena)."""
        self._loose.setdefault(oid, (type_num, size, zdata))


class QuarantineView:
    """A received pack seen together with the store, before it is allowed into the store.

    Receive-pack checks connectivity and runs validators against this view; only when every check
    passes is the pack added to the real store.
    """

    def __init__(self, store: MemoryObjectStore, pack: StoredPack) -> None:
        self.store = store
        self.pack = pack
        self._cache = SHARED_DELTA_CACHE

    def has(self, oid: bytes) -> bool:
        return oid in self.pack or self.store.has(oid)

    __contains__ = has

    def get(self, oid: bytes) -> tuple[int, bytes]:
        pos = self.pack.position(oid)
        if pos is None:
            return self.store.get(oid)
        return read_pack_object(self.pack, pos, self._cache, self.store.get)

    def type_of(self, oid: bytes) -> int:
        pos = self.pack.position(oid)
        if pos is None:
            return self.store.type_of(oid)
        return self.pack.types[pos]

    def is_new(self, oid: bytes) -> bool:
        """In the received pack and not already in the store."""
        return oid in self.pack and not self.store.has(oid)
