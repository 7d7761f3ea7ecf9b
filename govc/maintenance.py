"""Background upkeep of stored repositories: consolidating many small packs into one.

Every push adds a pack; a busy repository would soon be hundreds of them, each a lookup on
every object access. Compaction writes one pack holding every object of the current packs
(splicing stored data and deltas, so nothing is recompressed), makes it durable, swaps it in,
and only then deletes the old files. Killed at any point, it leaves either the old packs or the
new one or both on disk, all loadable: nothing is lost.
"""

from __future__ import annotations

import logging
from array import array

from govc.repository import Repository
from protocol.packwriter import generate_pack
from storage.packs import StoredPack

log = logging.getLogger("govc.maintenance")

#: Compact a repository once it has this many packs.
PACK_THRESHOLD = 8


def compact(repo: Repository, threshold: int = PACK_THRESHOLD) -> bool:
    """Consolidate ``repo``'s packs if there are at least ``threshold``; True if it did."""
    with repo.maintenance_lock:
        packs = repo.objects.packs
        if len(packs) < max(threshold, 2):
            return False
        order: list[bytes] = []
        seen: set[bytes] = set()
        for pack in packs:
            for oid in pack.iter_oids():
                if oid not in seen:
                    seen.add(oid)
                    order.append(oid)
        where: dict[bytes, int] = {}
        data = b"".join(generate_pack(repo.objects, order, offsets=where))
        by_offset = sorted(where.items(), key=lambda item: item[1])
        oids = [oid for oid, _ in by_offset]
        offsets = array("Q", [at for _, at in by_offset])
        offsets.append(len(data) - 20)
        types = bytearray(repo.objects.type_of(oid) for oid in oids)
        sizes = array("Q", [repo.objects.size_of(oid) for oid in oids])
        merged = StoredPack(data, oids, offsets, types, sizes)
        repo.backend.store_pack(merged)
        repo.objects.replace_packs(packs, merged)
        repo.backend.remove_packs([p for p in packs if p.name != merged.name])
        log.info("compacted %s: %d packs into one of %d objects (%d bytes)",
                 repo.name, len(packs), len(oids), len(data))
        return True
