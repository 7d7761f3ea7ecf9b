"""StoredPack's compact index (binary ids, a sorted prefix array and a fan-out table instead of a
dict of hex ids): every lookup answers as the dict did, and the sidecar that stores the index on
disk still reads its first version."""

from __future__ import annotations

import hashlib
import struct
from array import array
from pathlib import Path

import pytest

from storage.disk import SIDECAR_MAGIC, DataDirectory, decode_sidecar, encode_sidecar, sidecar_is_current
from storage.objects import MemoryObjectStore
from storage.packs import PackOids, StoredPack, index_pack, read_pack_object
from tests.helpers import git


def synthetic(oids: list[bytes]) -> StoredPack:
    """A pack whose index holds ``oids`` (the bytes are not a real pack: only lookups are tested)."""
    n = len(oids)
    return StoredPack(bytes(40), oids, array("Q", range(12, 13 + n)), bytearray([3] * n), array("Q", [1] * n))


def hex_id(text: str) -> bytes:
    return hashlib.sha1(text.encode()).hexdigest().encode()


def test_every_id_is_found_at_its_position_and_nothing_else_is() -> None:
    oids = [hex_id(str(i)) for i in range(1000)]
    pack = synthetic(oids)
    assert len(pack) == 1000
    for pos, oid in enumerate(oids):
        assert pack.position(oid) == pos
        assert oid in pack
        assert pack.by_oid.get(oid) == pos and pack.by_oid[oid] == pos and oid in pack.by_oid
        assert pack.oid_at(pos) == oid
    for i in range(1000, 1200):
        assert pack.position(hex_id(str(i))) is None
        assert hex_id(str(i)) not in pack
        assert pack.by_oid.get(hex_id(str(i))) is None
    with pytest.raises(KeyError):
        pack.by_oid[hex_id("missing")]


@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 17, 300])
def test_small_packs_and_the_ends_of_the_id_space(n: int) -> None:
    edges = [b"0" * 40, b"f" * 40, b"00000000" + b"f" * 32, b"ffffffff" + b"0" * 32]
    oids = [hex_id(str(i)) for i in range(n)] + edges[: min(n, 4)]
    pack = synthetic(oids)
    assert [pack.position(o) for o in oids] == list(range(len(oids)))
    for absent in edges[min(n, 4):]:
        assert pack.position(absent) is None


def test_ids_sharing_their_first_four_bytes_are_told_apart() -> None:
    shared = [b"abcdef01" + hex_id(str(i))[8:] for i in range(50)]
    oids = [hex_id(str(i)) for i in range(200)] + shared
    pack = synthetic(oids)
    for pos, oid in enumerate(oids):
        assert pack.position(oid) == pos
    assert pack.position(b"abcdef01" + b"0" * 32) is None
    store = MemoryObjectStore()
    store.add_pack(pack)
    assert all(store.type_of(oid) == 3 for oid in shared)
    assert not store.has(b"abcdef01" + b"1" * 32)


@pytest.mark.parametrize("spelling", [
    lambda o: o.upper(), lambda o: o[:39], lambda o: o[:38], lambda o: o + b"0", lambda o: o + b"00",
    lambda o: b"", lambda o: b"zz" + o[2:], lambda o: b"+" + o[1:], lambda o: o[:4] + b"_" + o[5:],
    lambda o: o.decode(),
])
def test_only_the_canonical_spelling_is_found(spelling) -> None:  # type: ignore[no-untyped-def]
    oid = b"1234567890abcdef" + hex_id("x")[16:]
    digits = b"1234567890" * 4
    pack = synthetic([oid, digits])
    store = MemoryObjectStore()
    store.add_pack(pack)
    assert pack.position(digits) == 1 and store.has(digits)
    other = spelling(oid)
    assert other not in pack
    assert pack.by_oid.get(other) is None
    assert not store.has(other)


def test_oids_is_a_sequence_that_compares_with_lists() -> None:
    oids = [hex_id(str(i)) for i in range(10)]
    view = synthetic(oids).oids
    assert isinstance(view, PackOids)
    assert view == oids and oids == view and view == tuple(oids) and view != oids[:-1]
    assert view == synthetic(oids).oids
    assert list(view) == oids and len(view) == 10
    assert view[0] == oids[0] and view[-1] == oids[-1] and view[2:5] == oids[2:5]
    assert view.index(oids[3]) == 3 and oids[4] in view
    with pytest.raises(IndexError):
        view[10]
    assert set(synthetic(oids).iter_oids()) == set(oids)


def test_positions_and_offsets_use_four_bytes_when_they_fit() -> None:
    pack = synthetic([hex_id(str(i)) for i in range(10)])
    assert pack.offsets.typecode == pack.sizes.typecode == pack.order.typecode == "I"
    huge = 1 << 33
    big = StoredPack(bytes(40), [hex_id("a")], array("Q", [12, huge]), bytearray([3]), array("Q", [huge]))
    assert big.offsets.typecode == big.sizes.typecode == "Q"
    assert list(big.offsets) == [12, huge] and big.sizes[0] == huge


def encode_sidecar_v1(pack: StoredPack) -> bytes:
    """The first sidecar format (no lookup order), as govc wrote it before."""
    body = bytearray(b"GOVCIDX1") + struct.pack(">I", len(pack)) + pack.checksum + pack.ids
    body += struct.pack(f"<{len(pack) + 1}Q", *pack.offsets) + bytes(pack.types)
    body += struct.pack(f"<{len(pack)}Q", *pack.sizes)
    return bytes(body + hashlib.sha1(body).digest())


def same_index(a: StoredPack, b: StoredPack) -> None:
    assert a.data == b.data and a.ids == b.ids and a.oids == b.oids
    assert list(a.offsets) == list(b.offsets) and bytes(a.types) == bytes(b.types)
    assert list(a.sizes) == list(b.sizes) and list(a.order) == list(b.order)


def test_sidecar_round_trip_and_the_old_version(git_history: Path) -> None:
    pack = index_pack(git("-C", git_history, "pack-objects", "--all", "--stdout", "-q", input=b"").stdout)
    raw = encode_sidecar(pack)
    assert raw.startswith(SIDECAR_MAGIC) and sidecar_is_current(raw)
    same_index(decode_sidecar(raw, pack.data), pack)
    old = encode_sidecar_v1(pack)
    assert not sidecar_is_current(old)
    loaded = decode_sidecar(old, pack.data)
    same_index(loaded, pack)
    for pos in range(len(pack)):
        assert loaded.position(pack.oid_at(pos)) == pos
        assert read_pack_object(loaded, pos) == read_pack_object(pack, pos)


def test_a_version_1_sidecar_on_disk_is_read_and_rewritten(git_history: Path, tmp_path: Path) -> None:
    pack = index_pack(git("-C", git_history, "pack-objects", "--all", "--stdout", "-q", input=b"").stdout)
    directory = DataDirectory(tmp_path / "data")
    directory.create_repo("r")
    backend = directory.backend("r")
    backend.store_pack(pack)
    sidecar = backend.pack_dir / f"pack-{pack.name}.govc"
    sidecar.write_bytes(encode_sidecar_v1(pack))
    (loaded,) = backend.load().packs
    same_index(loaded, pack)
    assert sidecar.read_bytes() == encode_sidecar(pack)


def test_a_sidecar_whose_lookup_order_is_out_of_range_is_rebuilt(git_history: Path, tmp_path: Path) -> None:
    pack = index_pack(git("-C", git_history, "pack-objects", "--all", "--stdout", "-q", input=b"").stdout)
    raw = encode_sidecar(pack)
    body = raw[:-24] + struct.pack("<I", len(pack))  # the last lookup position points past the end
    bad = body + hashlib.sha1(body).digest()
    with pytest.raises(ValueError):
        decode_sidecar(bad, pack.data)
    directory = DataDirectory(tmp_path / "data")
    directory.create_repo("r")
    backend = directory.backend("r")
    backend.store_pack(pack)
    sidecar = backend.pack_dir / f"pack-{pack.name}.govc"
    sidecar.write_bytes(bad)
    (loaded,) = backend.load().packs
    same_index(loaded, pack)
    assert sidecar.read_bytes() == raw
