"""Packs kept exactly as received, with the index govc builds for them at ingest.

A :class:`StoredPack` is the pack's bytes (header, objects, trailing checksum, byte for byte as Git
wrote them) plus parallel arrays in offset order: object ids, offsets, resolved types and sizes. The
compressed bytes of any object are therefore a slice of the pack, which is what lets a clone splice
stored data and stored deltas into its response without inflating and deflating them again.
"""

from __future__ import annotations

import hashlib
import itertools
import struct
import threading
from array import array
from binascii import a2b_hex
from bisect import bisect_left
from collections import Counter, OrderedDict
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate, repeat
from operator import itemgetter, rshift
from typing import overload

from dulwich.pack import apply_delta
from zlib_ng import zlib_ng

from storage.errors import CorruptObject, StorageError

OBJ_COMMIT = 1
OBJ_TREE = 2
OBJ_BLOB = 3
OBJ_TAG = 4
OFS_DELTA = 6
REF_DELTA = 7
TYPE_NAMES = {OBJ_COMMIT: b"commit", OBJ_TREE: b"tree", OBJ_BLOB: b"blob", OBJ_TAG: b"tag"}
TYPE_NUMS = {v: k for k, v in TYPE_NAMES.items()}

#: Compression level for objects govc compresses itself (git's default is zlib's 6; 1 is ~4x faster
#: and costs a few percent in size, the trade Git servers make for fetch responses).
COMPRESSION_LEVEL = 1

#: Largest object a push may carry (after inflation and delta application). Git has no default
#: limit; a memory-first server needs one so that a small hostile pack cannot exhaust RAM.
MAX_OBJECT_SIZE = 1 << 30

_SERIALS = itertools.count(1)

ExternalResolver = Callable[[bytes], tuple[int, bytes]]
#: Called once per object of a pack being indexed, with its id, type and full content; the one
#: moment every received object is inflated anyway, so checks hang off it instead of re-reading.
ObjectVisitor = Callable[[bytes, int, bytes], None]


class PackFormatError(StorageError):
    """A pack stream that is not a valid Git pack; the message is what the client is shown."""


def object_id(type_num: int, content: bytes) -> bytes:
    """The hex object id Git computes: SHA-1 over ``<type> <size>\\0<content>``."""
    h = hashlib.sha1(b"%s %d\x00" % (TYPE_NAMES[type_num], len(content)))
    h.update(content)
    return h.hexdigest().encode()


def encode_object_header(pack_type: int, size: int) -> bytes:
    """The varint header that starts each packed object: type in bits 4-6, size in the rest."""
    out = bytearray()
    byte = (pack_type << 4) | (size & 0x0F)
    size >>= 4
    while size:
        out.append(byte | 0x80)
        byte = size & 0x7F
        size >>= 7
    out.append(byte)
    return bytes(out)


def encode_ofs_distance(distance: int) -> bytes:
    """Git's offset encoding for OFS_DELTA bases (big-endian, with the +1 bias per byte)."""
    out = bytearray([distance & 0x7F])
    distance >>= 7
    while distance:
        distance -= 1
        out.append(0x80 | (distance & 0x7F))
        distance >>= 7
    out.reverse()
    return bytes(out)


@dataclass(frozen=True, slots=True)
class EntryHeader:
    pack_type: int
    size: int
    data_start: int
    base: int | bytes | None  # absolute offset for OFS_DELTA, hex oid for REF_DELTA


def parse_entry_header(data: bytes | memoryview, offset: int) -> EntryHeader:
    """Decode the object header at ``offset`` without inflating anything."""
    try:
        c = data[offset]
        pack_type = (c >> 4) & 7
        size = c & 0x0F
        shift = 4
        pos = offset + 1
        while c & 0x80:
            c = data[pos]
            pos += 1
            size |= (c & 0x7F) << shift
            shift += 7
        base: int | bytes | None = None
        if pack_type == OFS_DELTA:
            c = data[pos]
            pos += 1
            dist = c & 0x7F
            while c & 0x80:
                c = data[pos]
                pos += 1
                dist = ((dist + 1) << 7) | (c & 0x7F)
            base = offset - dist
            if base < 12 or base >= offset:
                raise PackFormatError(f"bad delta base offset in pack at {offset}")
        elif pack_type == REF_DELTA:
            raw = bytes(data[pos : pos + 20])
            if len(raw) != 20:
                raise PackFormatError("pack truncated in a delta base")
            base = raw.hex().encode()
            pos += 20
        elif pack_type not in TYPE_NAMES:
            raise PackFormatError(f"invalid object type {pack_type} in pack at {offset}")
    except IndexError:
        raise PackFormatError("pack truncated in an object header") from None
    return EntryHeader(pack_type, size, pos, base)


def _inflate_stream(data: bytes, start: int, size: int) -> tuple[bytes, int]:
    """Inflate one zlib stream beginning at ``start``; return the content and the stream's end.

    The window fed to zlib is sized from the expected output so that ``unused_data`` (a copy) stays
    small; a pack of many objects is then scanned in linear time. Output is capped at the
    declared size, so a zlib bomb costs no more memory than an honest object.
    """
    if size > MAX_OBJECT_SIZE:
        raise PackFormatError(f"object at {start} is {size} bytes, over the {MAX_OBJECT_SIZE}-byte limit")
    view = memoryview(data)
    d = zlib_ng.decompressobj()
    out: list[bytes] = []
    produced = 0
    pos = start
    window = size + (size >> 6) + 64
    limit = len(data)
    while not d.eof:
        if d.unconsumed_tail:
            chunk: bytes | memoryview = d.unconsumed_tail
        else:
            if pos >= limit:
                raise PackFormatError("pack truncated inside an object's compressed data")
            chunk = view[pos : pos + window]
            pos += len(chunk)
            window = max(window, 65536)
        try:
            piece = d.decompress(chunk, size - produced + 1)
        except zlib_ng.error as e:
            raise PackFormatError(f"corrupt compressed data in pack at {start}: {e}") from None
        produced += len(piece)
        if produced > size:
            raise PackFormatError(f"object at {start} inflates to more than its declared {size} bytes")
        out.append(piece)
        if not piece and not d.eof and not d.unconsumed_tail and pos >= limit:
            raise PackFormatError("pack truncated inside an object's compressed data")
    end = pos - len(d.unused_data)
    content = out[0] if len(out) == 1 else b"".join(out)
    if len(content) != size:
        raise PackFormatError(f"object at {start} inflates to {len(content)} bytes, not {size}")
    return content, end


def delta_sizes(delta: bytes) -> tuple[int, int]:
    """The base and result sizes a delta declares in its header."""
    sizes = []
    pos = 0
    for _ in range(2):
        value = shift = 0
        while True:
            if pos >= len(delta):
                raise PackFormatError("truncated delta header")
            c = delta[pos]
            pos += 1
            value |= (c & 0x7F) << shift
            shift += 7
            if not c & 0x80:
                break
        sizes.append(value)
    return sizes[0], sizes[1]


def inflate_exact(compressed: bytes | memoryview, size: int) -> bytes:
    """Inflate a stored object whose compressed extent is known exactly."""
    try:
        content = zlib_ng.decompress(compressed, bufsize=max(size, 1))
    except zlib_ng.error as e:
        raise CorruptObject(f"corrupt stored object: {e}") from None
    if len(content) != size:
        raise CorruptObject("stored object has the wrong size")
    return content


def is_canonical(oid: bytes) -> bool:
    """Is ``oid`` spelt as git spells ids (40 hex digits, lowercase)? A lookup that matched the
    binary id checks this last, so that only the spelling the index holds is ever found."""
    return isinstance(oid, bytes) and len(oid) == 40 and (oid.islower() or oid.isdigit())


def _narrowed(values: array) -> array:
    """``values`` as 4-byte unsigned integers when they all fit (they nearly always do)."""
    if values.typecode == "I" or (len(values) and max(values) > 0xFFFFFFFF):
        return values
    return array("I", values)


def _prefixes(ids: bytes) -> array:
    """The first four bytes of each 20-byte id of ``ids`` as an integer, in the same order."""
    return array("I", map(itemgetter(0), _PREFIX.iter_unpack(ids)))


_PREFIX = struct.Struct(">I16x")


class PackOids(Sequence[bytes]):
    """The hex object ids of a :class:`StoredPack` in pack order, made on demand from its binary
    index (nothing per object is kept). Compares equal to any sequence of the same ids."""

    __slots__ = ("_ids",)

    def __init__(self, ids: bytes) -> None:
        self._ids = ids

    def __len__(self) -> int:
        return len(self._ids) // 20

    @overload
    def __getitem__(self, pos: int) -> bytes: ...

    @overload
    def __getitem__(self, pos: slice) -> list[bytes]: ...

    def __getitem__(self, pos: int | slice) -> bytes | list[bytes]:
        if isinstance(pos, slice):
            return [self[i] for i in range(*pos.indices(len(self)))]
        n = len(self)
        if pos < 0:
            pos += n
        if not 0 <= pos < n:
            raise IndexError("pack position out of range")
        return self._ids[20 * pos : 20 * pos + 20].hex().encode()

    def __iter__(self) -> Iterator[bytes]:
        ids = self._ids
        return (ids[at : at + 20].hex().encode() for at in range(0, len(ids), 20))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PackOids):
            return self._ids == other._ids
        if isinstance(other, Sequence) and not isinstance(other, str | bytes | bytearray):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"PackOids({len(self)} ids)"


class _PositionsById(Mapping[bytes, int]):
    """``StoredPack.by_oid``: the old ``{oid: position}`` dict's interface over the index."""

    __slots__ = ("_pack",)

    def __init__(self, pack: StoredPack) -> None:
        self._pack = pack

    def __getitem__(self, oid: bytes) -> int:
        pos = self._pack.position(oid)
        if pos is None:
            raise KeyError(oid)
        return pos

    def get(self, oid: bytes, default: int | None = None) -> int | None:  # type: ignore[override]
        pos = self._pack.position(oid)
        return default if pos is None else pos

    def __contains__(self, oid: object) -> bool:
        return isinstance(oid, bytes) and self._pack.position(oid) is not None

    def __iter__(self) -> Iterator[bytes]:
        return self._pack.iter_oids()

    def __len__(self) -> int:
        return len(self._pack)


class StoredPack:
    """A pack's bytes plus its index; positions (0..n-1) follow pack offset order.

    The index is built like git's ``.idx``, with nothing per object but fixed-width records:
    ``ids`` holds every object id as 20 binary bytes in pack order; ``prefixes`` holds the first
    four bytes of each id as an integer, sorted, and ``order`` the position each belongs to, so a
    lookup is a binary search of ``prefixes`` (in C, by :func:`bisect.bisect_left`) and a check of
    the whole id. ``offsets``, ``sizes`` (inflated size after deltas) and ``types`` are arrays in
    pack order. About 37 bytes an object in all, where a dict of hex ids took over 200.

    ``closure``, when known, is a set of object ids whose reachable objects are exactly this
    pack's objects (the ref tips of the push that brought it into an empty repository). A full
    clone wanting all of them and nothing outside the pack is then answered with the pack's own
    bytes, as git's pack reuse does, without walking the graph or re-framing any object.
    """

    __slots__ = ("_deltas", "_fanout", "_shift", "checksum", "closure", "data", "ids", "name", "offsets",
                 "order", "prefixes", "serial", "sizes", "types")  # fmt: skip

    def __init__(
        self, data: bytes, oids: Sequence[bytes], offsets: array, types: bytearray, sizes: array
    ) -> None:
        """A pack with its objects' hex ids, offsets (one more than ids: the last is where the
        trailer starts), types and sizes, all in pack order."""
        ids = bytes.fromhex(b"".join(oids).decode("ascii"))
        if len(ids) != 20 * len(oids):
            raise ValueError("object ids must be 40 hex digits")
        self._setup(data, ids, offsets, types, sizes, None)

    @classmethod
    def from_index(
        cls, data: bytes, ids: bytes, offsets: array, types: bytearray, sizes: array,
        order: array | None = None,
    ) -> StoredPack:
        """A pack from a stored index: ``ids`` binary in pack order and, if known, ``order``
        (positions sorted by the first four bytes of their id, as :attr:`order` holds them)."""
        pack = cls.__new__(cls)
        pack._setup(data, ids, offsets, types, sizes, order)
        return pack

    def _setup(
        self, data: bytes, ids: bytes, offsets: array, types: bytearray, sizes: array,
        order: array | None,
    ) -> None:
        n = len(ids) // 20
        if len(ids) != 20 * n or len(offsets) != n + 1 or len(types) != n or len(sizes) != n:
            raise ValueError("pack index arrays disagree in length")
        self.data = data
        self.ids = bytes(ids)
        self.offsets = _narrowed(offsets)  # n + 1 entries: the last is where the trailer starts
        self.types = types
        self.sizes = _narrowed(sizes)
        by_position = _prefixes(self.ids)
        if order is None:
            order = array("I", sorted(range(n), key=by_position.__getitem__))
        elif len(order) != n:
            raise ValueError("pack index order has the wrong length")
        self.order = order
        try:
            prefixes = self.prefixes = array("I", map(by_position.__getitem__, order))
        except IndexError:
            raise ValueError("pack index order names a position the pack lacks") from None
        # Where each run of prefixes with the same top bits starts, 4-8 entries a run, so a
        # lookup searches a handful of entries instead of the whole array (git's fan-out table,
        # with about n / 6 runs instead of 256: under a byte an object).
        bits = min(max(n.bit_length() - 3, 0), 20)
        self._shift = shift = 32 - bits
        runs = Counter(map(rshift, prefixes, repeat(shift)))
        self._fanout = array("I", accumulate(map(runs.__getitem__, range(1 << bits)), initial=0))
        self.checksum = data[-20:]
        self.name = self.checksum.hex()
        self.serial = next(_SERIALS)  # cache key: unlike id(), never reused by a later pack
        self.closure: frozenset[bytes] | None = None
        self._deltas: int | None = None

    # -- lookup ------------------------------------------------------------------------------

    def find(self, prefix: int, raw: bytes) -> int | None:
        """Position of the object whose 20-byte id is ``raw`` (whose first four bytes, as an
        integer, are ``prefix``; -1 matches nothing), or None. ``raw`` must be 20 bytes: a
        shorter one matches any id it starts (hence :func:`is_canonical` after a match)."""
        run = prefix >> self._shift  # -1 for a malformed id: an empty range from n to fanout[0]
        fanout, prefixes = self._fanout, self.prefixes
        end = fanout[run + 1]
        i = bisect_left(prefixes, prefix, fanout[run], end)
        while i < end and prefixes[i] == prefix:
            pos = self.order[i]
            if self.ids.startswith(raw, 20 * pos):
                return pos
            i += 1
        return None

    def position(self, oid: bytes) -> int | None:
        """Position of ``oid`` (hex) in the pack, or None if the pack does not hold it."""
        try:
            raw = a2b_hex(oid)
            prefix = int(oid[:8], 16)
        except (ValueError, TypeError):
            return None
        pos = self.find(prefix, raw)
        return pos if pos is not None and is_canonical(oid) else None

    def oid_at(self, pos: int) -> bytes:
        """The hex id of the object at ``pos``."""
        if not 0 <= pos < len(self.types):
            raise IndexError("pack position out of range")
        return self.ids[20 * pos : 20 * pos + 20].hex().encode()

    @property
    def oids(self) -> PackOids:
        """The hex ids in pack order, as a sequence made on demand."""
        return PackOids(self.ids)

    @property
    def by_oid(self) -> Mapping[bytes, int]:
        """``{oid: position}`` as a read-only view (prefer :meth:`position`)."""
        return _PositionsById(self)

    def __len__(self) -> int:
        return len(self.types)

    def __contains__(self, oid: object) -> bool:
        return isinstance(oid, bytes) and self.position(oid) is not None

    def iter_oids(self) -> Iterator[bytes]:
        return iter(PackOids(self.ids))

    # -- reading -----------------------------------------------------------------------------

    def delta_count(self) -> int:
        """How many entries are stored as deltas (the type bits of each entry's first byte, so
        nothing is inflated; remembered after the first call)."""
        if self._deltas is None:
            data = self.data
            self._deltas = sum(1 for at in self.offsets[:-1] if (data[at] >> 4) & 7 >= OFS_DELTA)
        return self._deltas

    def serves_whole(self, wants: Collection[bytes]) -> bool:
        """Is this pack exactly the set of objects reachable from ``wants``? True when every
        id of :attr:`closure` is wanted (so everything in the pack is reachable) and every want
        is in the pack (so, the pack being closed under links, nothing outside is)."""
        closure = self.closure
        if closure is None or len(wants) < len(closure):
            return False
        return closure.issubset(wants) and all(w in self for w in wants)

    def position_at(self, offset: int) -> int:
        pos = bisect_left(self.offsets, offset)
        if pos >= len(self.types) or self.offsets[pos] != offset:
            raise CorruptObject(f"no object at pack offset {offset}")
        return pos

    def header(self, pos: int) -> EntryHeader:
        return parse_entry_header(self.data, self.offsets[pos])

    def compressed(self, pos: int, header: EntryHeader) -> memoryview:
        return memoryview(self.data)[header.data_start : self.offsets[pos + 1]]

    def base_oid(self, header: EntryHeader) -> bytes | None:
        """The delta base of an entry as an object id (``None`` for a whole object)."""
        if isinstance(header.base, int):
            pos = self.position_at(header.base)
            return self.ids[20 * pos : 20 * pos + 20].hex().encode()
        return header.base


CLOSURE_MAGIC = b"GOVCTIP1"


def encode_closure(pack: StoredPack) -> bytes:
    """The ``.tips`` sidecar: the pack's :attr:`StoredPack.closure`, tied to the pack by its
    checksum and protected by its own (a damaged file is ignored, never trusted)."""
    assert pack.closure is not None
    body = bytearray(CLOSURE_MAGIC) + pack.checksum + struct.pack(">I", len(pack.closure))
    body += b"".join(bytes.fromhex(oid.decode()) for oid in sorted(pack.closure))
    body += hashlib.sha1(body).digest()
    return bytes(body)


def decode_closure(raw: bytes, pack: StoredPack) -> frozenset[bytes] | None:
    """The closure a ``.tips`` sidecar records for ``pack``, or None if the file is not one, is
    damaged, belongs to another pack or names an object the pack does not hold."""
    if len(raw) < 52 or raw[:8] != CLOSURE_MAGIC or hashlib.sha1(raw[:-20]).digest() != raw[-20:]:
        return None
    if raw[8:28] != pack.checksum:
        return None
    (n,) = struct.unpack(">I", raw[28:32])
    ids = raw[32:-20]
    if len(ids) != 20 * n:
        return None
    tips = frozenset(ids[i : i + 20].hex().encode() for i in range(0, len(ids), 20))
    return tips if all(t in pack for t in tips) else None


def _check_envelope(data: bytes) -> int:
    if len(data) < 32 or data[:4] != b"PACK":
        raise PackFormatError("not a pack: bad signature")
    version, count = struct.unpack(">II", data[4:12])
    if version not in (2, 3):
        raise PackFormatError(f"unsupported pack version {version}")
    if hashlib.sha1(memoryview(data)[:-20]).digest() != data[-20:]:
        raise PackFormatError("pack checksum mismatch")
    return count


def index_pack(
    data: bytes,
    resolve_external: ExternalResolver | None = None,
    on_object: ObjectVisitor | None = None,
) -> StoredPack:
    """Index a received pack, resolving every delta, and complete it if it is thin.

    Objects are inflated once while scanning; bases are inflated again only when they have delta
    children. A thin pack (ref-deltas against objects outside it) is completed as
    ``git index-pack --fix-thin`` does: the missing bases are appended as whole objects and the
    header and checksum rewritten, so every stored pack stands alone.
    """
    return _PackIndexer(data, on_object).run(resolve_external)


class _PackIndexer:
    """The state of indexing one pack: a scan, then a depth-first walk of each delta tree."""

    def __init__(self, data: bytes, on_object: ObjectVisitor | None = None) -> None:
        self.data = data
        self.on_object = on_object
        self.count = _check_envelope(data)
        self.offsets = array("Q")
        self.oids: list[bytes | None] = []
        self.types = bytearray()
        self.sizes = array("Q")
        self.deltas: dict[int, bytes] = {}  # position -> delta instructions
        self.ofs_children: dict[int, list[int]] = {}  # base offset -> child positions
        self.ref_children: dict[bytes, list[int]] = {}  # base oid -> child positions
        self.whole: list[int] = []  # positions of whole (non-delta) objects
        self._scan()

    def _scan(self) -> None:
        data, end_of_objects = self.data, len(self.data) - 20
        offset = 12
        for i in range(self.count):
            if offset >= end_of_objects:
                raise PackFormatError(f"pack has {i} objects but its header says {self.count}")
            h = parse_entry_header(data, offset)
            content, end = _inflate_stream(data, h.data_start, h.size)
            self.offsets.append(offset)
            if h.pack_type == OFS_DELTA:
                assert isinstance(h.base, int)
                self.ofs_children.setdefault(h.base, []).append(i)
            elif h.pack_type == REF_DELTA:
                assert isinstance(h.base, bytes)
                self.ref_children.setdefault(h.base, []).append(i)
            if h.base is None:
                oid = object_id(h.pack_type, content)
                if self.on_object is not None:
                    self.on_object(oid, h.pack_type, content)
                self.oids.append(oid)
                self.types.append(h.pack_type)
                self.sizes.append(h.size)
                self.whole.append(i)
            else:
                self.deltas[i] = content
                self.oids.append(None)
                self.types.append(0)
                self.sizes.append(0)
            offset = end
        if offset != end_of_objects:
            raise PackFormatError("garbage after the last object of the pack")
        self.offsets.append(end_of_objects)

    def _resolve_below(self, oid: bytes, pos: int, type_num: int, content: bytes) -> None:
        """Resolve every delta that has ``oid`` (at ``pos``, -1 if outside the pack) as base."""
        stack = [(oid, pos, content)]
        while stack:
            base_oid, base_pos, base = stack.pop()
            kids = list(self.ref_children.pop(base_oid, ()))
            if base_pos >= 0:
                kids += self.ofs_children.pop(self.offsets[base_pos], ())
            for child in kids:
                delta = self.deltas.pop(child)
                base_size, result_size = delta_sizes(delta)
                if base_size != len(base):
                    raise PackFormatError("delta base size does not match its base")
                if result_size > MAX_OBJECT_SIZE:
                    raise PackFormatError(f"delta result of {result_size} bytes is over the limit")
                try:
                    result = apply_delta(base, delta)
                except Exception as e:
                    raise PackFormatError(f"cannot apply delta: {e}") from None
                out = result if isinstance(result, bytes) else b"".join(result)
                child_oid = object_id(type_num, out)
                if self.on_object is not None:
                    self.on_object(child_oid, type_num, out)
                self.oids[child] = child_oid
                self.types[child] = type_num
                self.sizes[child] = len(out)
                stack.append((child_oid, child, out))

    def run(self, resolve_external: ExternalResolver | None) -> StoredPack:
        for i in self.whole:
            oid = self.oids[i]
            assert oid is not None
            if self.offsets[i] in self.ofs_children or oid in self.ref_children:
                h = parse_entry_header(self.data, self.offsets[i])
                raw = inflate_exact(
                    memoryview(self.data)[h.data_start : self.offsets[i + 1]], h.size
                )
                self._resolve_below(oid, i, h.pack_type, raw)
        external: list[tuple[bytes, int, bytes]] = []
        # A base missing from the store may still be a delta of this pack waiting on another
        # external base, so keep going round while anything resolves.
        progress = True
        while self.ref_children and progress:
            progress = False
            for base_oid in sorted(self.ref_children):
                if base_oid not in self.ref_children or resolve_external is None:
                    continue
                try:
                    tnum, content = resolve_external(base_oid)
                except KeyError:
                    continue
                external.append((base_oid, tnum, content))
                self._resolve_below(base_oid, -1, tnum, content)
                progress = True
        if self.ref_children:
            missing = min(self.ref_children).decode()
            raise PackFormatError(f"pack has unresolved deltas (missing base object {missing})")
        if self.deltas:
            raise PackFormatError(f"pack has {len(self.deltas)} unresolved deltas")
        seen: set[bytes] = set()
        for oid in self.oids:
            if oid in seen:
                assert oid is not None
                raise PackFormatError(f"pack contains object {oid.decode()} more than once")
            seen.add(oid)  # type: ignore[arg-type]
        # A base the store had but that this pack also carried needs no second copy.
        external = [e for e in external if e[0] not in seen]
        oids = [oid for oid in self.oids if oid is not None]
        if not external:
            return StoredPack(self.data, oids, self.offsets, self.types, self.sizes)
        return _complete_thin(self.data, self.count, oids, self.offsets, self.types, self.sizes,
                              external)


def _complete_thin(
    data: bytes,
    count: int,
    oids: list[bytes],
    offsets: array,
    types: bytearray,
    sizes: array,
    external: list[tuple[bytes, int, bytes]],
) -> StoredPack:
    body = bytearray(b"PACK" + struct.pack(">II", 2, count + len(external)))
    body += memoryview(data)[12:-20]
    new_offsets = array("Q", offsets[:-1])
    new_oids = list(oids)
    new_types = bytearray(types)
    new_sizes = array("Q", sizes)
    for oid, tnum, content in external:
        new_offsets.append(len(body))
        new_oids.append(oid)
        new_types.append(tnum)
        new_sizes.append(len(content))
        body += encode_object_header(tnum, len(content))
        body += zlib_ng.compress(content, COMPRESSION_LEVEL)
    new_offsets.append(len(body))
    body += hashlib.sha1(body).digest()
    return StoredPack(bytes(body), new_oids, new_offsets, new_types, new_sizes)


class DeltaBaseCache:
    """A size-bounded LRU of inflated objects, so walking a delta chain does not redo its bases.

    Shared by the request threads of one repository, hence the lock.
    """

    def __init__(self, max_bytes: int = 64 << 20) -> None:
        self._max = max_bytes
        self._size = 0
        self._items: OrderedDict[tuple[int, int], tuple[int, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[int, int]) -> tuple[int, bytes] | None:
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
            return hit

    def put(self, key: tuple[int, int], value: tuple[int, bytes]) -> None:
        n = len(value[1])
        if n > self._max // 8:
            return
        with self._lock:
            if key in self._items:
                return
            self._items[key] = value
            self._size += n
            while self._size > self._max:
                _, (_, old) = self._items.popitem(last=False)
                self._size -= len(old)


def read_pack_object(
    pack: StoredPack,
    pos: int,
    cache: DeltaBaseCache | None = None,
    resolve_external: ExternalResolver | None = None,
) -> tuple[int, bytes]:
    """Type and content of the object at ``pos``, applying its delta chain."""
    chain: list[tuple[int, bytes]] = []
    data = pack.data
    key_base = pack.serial
    base_type = 0
    content: bytes | None = None
    cur = pos
    while True:
        if cache is not None:
            hit = cache.get((key_base, cur))
            if hit is not None:
                base_type, content = hit
                break
        h = parse_entry_header(data, pack.offsets[cur])
        raw = inflate_exact(memoryview(data)[h.data_start : pack.offsets[cur + 1]], h.size)
        if h.pack_type in TYPE_NAMES:
            base_type, content = h.pack_type, raw
            break
        chain.append((cur, raw))
        if len(chain) > 10000:
            raise CorruptObject("delta chain too long (cycle?)")
        if isinstance(h.base, int):
            cur = pack.position_at(h.base)
        else:
            assert isinstance(h.base, bytes)
            nxt = pack.position(h.base)
            if nxt is None:
                if resolve_external is None:
                    raise CorruptObject(f"delta base {h.base.decode()} not found")
                base_type, content = resolve_external(h.base)
                break
            cur = nxt
    assert content is not None
    if chain and cache is not None:
        cache.put((key_base, cur), (base_type, content))
    for i, (at, delta) in enumerate(reversed(chain)):
        result = apply_delta(content, delta)
        content = result if isinstance(result, bytes) else b"".join(result)
        if cache is not None and i < len(chain) - 1:
            cache.put((key_base, at), (base_type, content))
    return base_type, content
