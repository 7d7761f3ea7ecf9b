"""A bounded cache of whole generated packs, keyed by the request that produced them.

CI fan-out sends the same fetch many times in a row (a hundred runners cloning or fetching the
same commit); after the first, the answer is already known. An entry holds the pack's bytes as
they were streamed (unframed, so any side-band size can frame them) and the counts for the
progress lines. Entries are found by a key the caller builds from the normalised request (wants,
common haves, shallow boundary, filter, capabilities that change the pack's bytes) and an owner
token with a generation: bumping the owner's generation (on every ref update) drops its entries,
so nothing computed against an older ref state is served, even for the parts of an answer that
depend on refs (``include-tag``).

Memory is bounded in bytes (least recently used entries go first) and one entry may take at most
a quarter of the budget, so a single huge clone never evicts everything else. Identical requests
that arrive together are each computed (the first to finish is kept): making one wait for the
other would hold a server worker thread the other may need to make progress.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass

#: Default budget; ``GOVC_PACK_CACHE_BYTES`` overrides it (0 turns the cache off).
DEFAULT_MAX_BYTES = 128 << 20


@dataclass(frozen=True, slots=True)
class CachedPack:
    """One generated pack: its bytes in the pieces they were produced in, and its counts."""

    chunks: tuple[bytes, ...]
    objects: int
    deltas: int
    reused: int
    reused_deltas: int

    @property
    def size(self) -> int:
        return sum(len(c) for c in self.chunks)


class PackCache:
    """LRU of :class:`CachedPack` by key, bounded in bytes; thread-safe."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self.max_entry = max_bytes // 4
        self._items: OrderedDict[tuple[int, int, Hashable], CachedPack] = OrderedDict()
        self._size = 0
        self._generations: dict[int, int] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def size(self) -> int:
        """Bytes held now (never above ``max_bytes``)."""
        return self._size

    def __len__(self) -> int:
        return len(self._items)

    def key(self, owner: int, request: Hashable) -> tuple[int, int, Hashable]:
        """The full key of ``request`` for ``owner`` at its current generation."""
        return owner, self._generations.get(owner, 0), request

    def invalidate(self, owner: int) -> None:
        """Refs of ``owner`` moved: forget everything computed before (and never store what an
        in-flight request computed against the old state, since its key has the old
        generation)."""
        with self._lock:
            self._generations[owner] = self._generations.get(owner, 0) + 1
            for key in [k for k in self._items if k[0] == owner]:
                self._size -= self._items.pop(key).size

    def get(self, key: tuple[int, int, Hashable]) -> CachedPack | None:
        with self._lock:
            hit = self._items.get(key)
            if hit is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return hit

    def put(self, key: tuple[int, int, Hashable], entry: CachedPack) -> bool:
        """Keep ``entry`` unless it is too big or its generation is already gone."""
        size = entry.size
        if size > self.max_entry:
            return False
        with self._lock:
            owner, generation, _ = key
            if self._generations.get(owner, 0) != generation or key in self._items:
                return False
            self._items[key] = entry
            self._size += size
            while self._size > self.max_bytes:
                _, old = self._items.popitem(last=False)
                self._size -= old.size
            return True


def _budget() -> int:
    raw = os.environ.get("GOVC_PACK_CACHE_BYTES", "")
    try:
        return max(int(raw), 0) if raw else DEFAULT_MAX_BYTES
    except ValueError:
        return DEFAULT_MAX_BYTES


#: One cache for the process: the bound is a memory budget for the server, shared by every
#: repository (owner tokens keep their entries apart).
SHARED_PACK_CACHE = PackCache(_budget())
