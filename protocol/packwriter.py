"""Pack generation that splices stored compressed data and stored deltas.

An object stored whole is copied as its stored zlib stream; an object stored as a delta is copied
as that delta when its base is in the same outgoing pack (written first, as an offset delta) or, in
a thin pack, when the client already holds the base. Only an object whose base is neither is
inflated and sent whole. Nothing is ever deflated twice.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from zlib_ng import zlib_ng

from protocol.sideband import MAX_SIDEBAND_DATA
from storage.packs import COMPRESSION_LEVEL, OFS_DELTA, REF_DELTA, encode_object_header, encode_ofs_distance

#: Pack bytes are handed out in pieces that fill two side-band packets exactly (≥ 64 KiB writes).
CHUNK_SIZE = 2 * MAX_SIDEBAND_DATA


class StoredRecord(Protocol):
    type_num: int
    size: int
    compressed: bytes | memoryview
    base: bytes | None


class PackSource(Protocol):
    def packed_record(self, oid: bytes) -> StoredRecord: ...

    def get(self, oid: bytes) -> tuple[int, bytes]: ...


@dataclass(slots=True)
class PackStats:
    objects: int = 0
    deltas: int = 0
    reused: int = 0
    reused_deltas: int = 0
    size: int = 0


def generate_pack(
    source: PackSource,
    oids: Sequence[bytes],
    *,
    ofs_delta: bool = True,
    client_has: Collection[bytes] = (),
    stats: PackStats | None = None,
    chunk_size: int = CHUNK_SIZE,
    offsets: dict[bytes, int] | None = None,
) -> Iterator[bytes]:
    """Yield a complete version-2 pack of ``oids`` in pieces of ``chunk_size`` bytes (the last
    piece may be shorter). ``client_has`` non-empty makes the pack thin. ``offsets``, if given,
    receives where each object starts, so the pack can be indexed without reading it back."""
    stats = stats if stats is not None else PackStats()
    sha = hashlib.sha1()
    buf = bytearray(b"PACK" + struct.pack(">II", 2, len(oids)))
    offset = 0  # offset of buf[0] in the pack
    written: dict[bytes, int] = offsets if offsets is not None else {}
    sending = set(oids)

    def write_one(oid: bytes, rec: StoredRecord) -> None:
        nonlocal buf
        at = offset + len(buf)
        base = rec.base
        if base is None:
            buf += encode_object_header(rec.type_num, rec.size)
            buf += rec.compressed
            stats.reused += 1
        elif base in written or (base in client_has and base not in sending):
            if base in written and ofs_delta:
                buf += encode_object_header(OFS_DELTA, rec.size)
                buf += encode_ofs_distance(at - written[base])
            else:
                buf += encode_object_header(REF_DELTA, rec.size)
                buf += bytes.fromhex(base.decode())
            buf += rec.compressed
            stats.reused += 1
            stats.reused_deltas += 1
            stats.deltas += 1
        else:
            type_num, content = source.get(oid)
            buf += encode_object_header(type_num, len(content))
            buf += zlib_ng.compress(content, COMPRESSION_LEVEL)
        written[oid] = at
        stats.objects += 1

    for oid in oids:
        if oid in written:
            continue
        # Bases in this pack go first so that their dependants can be offset deltas.
        chain = [(oid, source.packed_record(oid))]
        while True:
            base = chain[-1][1].base
            if base is None or base in written or base not in sending:
                break
            if any(base == item for item, _ in chain):
                break  # a cycle across packs: the last one is sent whole
            chain.append((base, source.packed_record(base)))
        for item, rec in reversed(chain):
            if item not in written:
                write_one(item, rec)
        if len(buf) >= chunk_size:
            view = memoryview(buf)
            cut = len(buf) - len(buf) % chunk_size
            for start in range(0, cut, chunk_size):
                piece = bytes(view[start : start + chunk_size])
                sha.update(piece)
                yield piece
            view.release()
            del buf[:cut]
            offset += cut
    sha.update(buf)
    buf += sha.digest()
    stats.size = offset + len(buf)
    yield bytes(buf)
