"""Pack indexing, delta resolution, thin-pack completion and corrupt packs."""

from __future__ import annotations

import hashlib
import itertools
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage.errors import CorruptObject
from storage.objects import MemoryObjectStore
from storage.packs import (
    DeltaBaseCache,
    PackFormatError,
    encode_object_header,
    encode_ofs_distance,
    index_pack,
    object_id,
    parse_entry_header,
    read_pack_object,
)
from tests.helpers import (
    BIG_V1,
    BIG_V2,
    C6,
    TRANSCRIPT_PACK_NAME,
    bare_copy,
    git,
    git_index_pack,
    git_oid,
    make_delta,
    make_pack,
    obj_header,
    ofs_delta_entry,
    ref_delta_entry,
    reseal,
    whole_entry,
)

TYPES = {b"commit": 1, b"tree": 2, b"blob": 3, b"tag": 4}


@pytest.fixture(scope="module")
def git_objects(served) -> dict[bytes, tuple[int, bytes]]:
    """Every object of the advanced transcript repository, as git reads it."""
    listing = git("--git-dir", served.advanced, "cat-file", "--batch-all-objects", "--batch").stdout
    out: dict[bytes, tuple[int, bytes]] = {}
    i = 0
    while i < len(listing):
        nl = listing.index(b"\n", i)
        oid, type_name, size = listing[i:nl].split()
        out[oid] = (TYPES[type_name], listing[nl + 1 : nl + 1 + int(size)])
        i = nl + 1 + int(size) + 1
    return out


@pytest.fixture(scope="module")
def transcript_pack(served) -> bytes:
    (pack,) = served.repo_snapshot.packs
    return pack


def store_with(*objects: tuple[int, bytes]) -> MemoryObjectStore:
    store = MemoryObjectStore()
    for type_num, data in objects:
        store.add_object(type_num, data)
    return store


# -- the transcript pack ----------------------------------------------------------------------


def test_index_transcript_pack_matches_git(served, transcript_pack: bytes, git_objects) -> None:
    (idx,) = (served.repo / "objects" / "pack").glob("*.idx")
    shown = git("show-index", input=idx.read_bytes()).stdout.decode().split("\n")
    git_offsets = {line.split()[1].encode(): int(line.split()[0]) for line in shown if line}

    pack = index_pack(transcript_pack)
    assert idx.name == f"pack-{pack.name}.idx"  # the pack's name is its checksum
    assert pack.name == TRANSCRIPT_PACK_NAME  # and the one every transcript shows
    assert pack.data == transcript_pack  # kept byte for byte
    assert len(pack) == 32
    assert {oid: pack.offsets[i] for i, oid in enumerate(pack.oids)} == git_offsets
    for i, oid in enumerate(pack.oids):
        assert pack.types[i] == git_objects[oid][0], oid
    assert list(pack.offsets) == sorted(pack.offsets)
    assert pack.offsets[-1] == len(transcript_pack) - 20


def test_every_object_reads_back_as_git_has_it(transcript_pack: bytes, git_objects) -> None:
    pack = index_pack(transcript_pack)
    cache = DeltaBaseCache()
    for pos, oid in enumerate(pack.oids):
        assert read_pack_object(pack, pos) == git_objects[oid]
        assert read_pack_object(pack, pos, cache) == git_objects[oid]  # through the cache
        assert read_pack_object(pack, pos, cache) == git_objects[oid]  # from the cache


@pytest.fixture(scope="module")
def verify_pack(served) -> dict[bytes, tuple[int, int, int, bytes | None]]:
    """``git verify-pack -v``: oid -> (size, size in pack, offset, delta base or None)."""
    (idx,) = (served.repo / "objects" / "pack").glob("*.idx")
    out: dict[bytes, tuple[int, int, int, bytes | None]] = {}
    for line in git("verify-pack", "-v", idx).stdout.splitlines():
        parts = line.split()
        if len(parts) >= 5 and len(parts[0]) == 40:
            base = parts[6] if len(parts) == 7 else None
            out[parts[0]] = (int(parts[2]), int(parts[3]), int(parts[4]), base)
    return out


def test_stored_deltas_are_kept_as_deltas(transcript_pack: bytes, verify_pack) -> None:
    """Every object git stored as a delta stays a delta of the same base, with the same size;
    the others are whole. (data/big.txt at c6 is the 645-byte delta of the c2 version.)"""
    pack = index_pack(transcript_pack)
    assert verify_pack[BIG_V2][3] == BIG_V1
    for pos, oid in enumerate(pack.oids):
        size, packed, offset, base = verify_pack[oid]
        header = pack.header(pos)
        assert pack.offsets[pos] == offset
        assert pack.offsets[pos + 1] - offset == packed
        assert header.size == size
        assert pack.base_oid(header) == base


def test_on_object_sees_every_object_once(transcript_pack: bytes, git_objects) -> None:
    seen: list[bytes] = []

    def visit(oid: bytes, type_num: int, content: bytes) -> None:
        assert git_objects[oid] == (type_num, content)
        seen.append(oid)

    index_pack(transcript_pack, None, visit)
    assert sorted(seen) == sorted(set(seen))
    assert len(seen) == 32


# -- thin packs -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def git_thin_pack(served) -> bytes:
    """What ``git pack-objects --thin`` sends for c8 to a client that has c6."""
    out = git(
        "--git-dir",
        served.advanced,
        "pack-objects",
        "--thin",
        "--stdout",
        "--revs",
        "--no-use-bitmap-index",
        input=b"main\n^" + C6 + b"\n",
    ).stdout
    assert out[:4] == b"PACK"
    return out


def test_complete_a_thin_pack_from_git(served, repo_c6, git_thin_pack: bytes, git_objects, tmp_path) -> None:
    count = struct.unpack(">I", git_thin_pack[8:12])[0]
    # it really is thin: it cannot be indexed alone
    with pytest.raises(PackFormatError):
        index_pack(git_thin_pack)
    before = len(repo_c6.objects)
    pack = repo_c6.objects.index_pack(git_thin_pack)
    assert len(repo_c6.objects) == before  # indexing adds nothing
    assert len(pack) > count  # the missing bases were appended
    assert struct.unpack(">I", pack.data[8:12])[0] == len(pack)
    assert hashlib.sha1(pack.data[:-20]).digest() == pack.data[-20:]
    wanted = git("--git-dir", served.advanced, "rev-list", "--objects", "main", "--not", C6.decode()).stdout
    assert {line.split()[0] for line in wanted.splitlines()} <= set(pack.oids)
    for pos, oid in enumerate(pack.oids):
        assert read_pack_object(pack, pos) == git_objects[oid]
    # the completed pack stands alone: git indexes it without --fix-thin in an empty repository
    empty = tmp_path / "empty.git"
    git("init", "-q", "--bare", empty)
    result = git_index_pack(empty, pack.data)
    assert result.returncode == 0, result.stderr
    # and with --strict where the rest of history is present
    copy = bare_copy(served.repo, tmp_path / "copy.git")
    result = git_index_pack(copy, pack.data, "--strict")
    assert result.returncode == 0, result.stderr


def test_thin_pack_against_a_store_without_the_base(git_thin_pack: bytes) -> None:
    store = MemoryObjectStore()
    with pytest.raises(PackFormatError):
        store.index_pack(git_thin_pack)
    assert len(store) == 0 and store.packs == []


def test_ref_delta_chain_through_an_external_base(tmp_path) -> None:
    """A thin pack whose ref-delta has as base another ref-delta of the same pack, itself against an
    object the receiver holds. git's index-pack resolves it whatever the object ids; the order
    in which bases are looked up must not depend on how the ids sort."""
    external = b"external base blob\n" * 3
    ext_oid = git_oid(3, external)
    for i in range(200):  # pick a middle object whose id sorts before the external base's
        middle = external + b"line %d\n" % i
        if git_oid(3, middle) < ext_oid:
            break
    top = middle + b"top\n"
    mid_oid = git_oid(3, middle)
    pack = make_pack(
        [
            ref_delta_entry(mid_oid, make_delta(middle, top)),
            ref_delta_entry(ext_oid, make_delta(external, middle)),
        ]
    )
    # git itself accepts this pack
    repo = tmp_path / "r.git"
    git("init", "-q", "--bare", repo)
    git("--git-dir", repo, "hash-object", "-w", "--stdin", input=external)
    assert git_index_pack(repo, pack, "--fix-thin").returncode == 0

    stored = store_with((3, external)).index_pack(pack)
    assert set(stored.oids) == {git_oid(3, top), mid_oid, ext_oid}


def test_ref_delta_chain_inside_a_pack() -> None:
    base = b"0123456789\n" * 20
    v2 = base + b"two\n"
    v3 = v2 + b"three\n"
    pack = make_pack(
        [
            ref_delta_entry(git_oid(3, v2), make_delta(v2, v3)),  # base comes later, as a ref-delta
            ref_delta_entry(git_oid(3, base), make_delta(base, v2)),
            whole_entry(3, base),
        ]
    )
    stored = index_pack(pack)
    assert stored.oids == [git_oid(3, v3), git_oid(3, v2), git_oid(3, base)]
    assert [read_pack_object(stored, i)[1] for i in range(3)] == [v3, v2, base]
    assert stored.data == pack  # not thin: unchanged


def test_object_repeated_as_a_delta_against_itself() -> None:
    """An object sent whole and again as a ref-delta whose base is that same object. git's
    index-pack refuses the pack ("REF_DELTA already resolved (duplicate base ...)"); accepting it
    is only safe if the object stays readable, and a store that takes it must still answer for it."""
    blob = b"hello duplicate\n"
    oid = git_oid(3, blob)
    pack = make_pack([whole_entry(3, blob), ref_delta_entry(oid, make_delta(blob, blob))])
    store = MemoryObjectStore()
    try:
        stored = store.index_pack(pack)
    except PackFormatError:
        return  # refused, as git does
    store.add_pack(stored)
    assert store.get(oid) == (3, blob)
    for pos in range(len(stored)):
        assert read_pack_object(stored, pos) == (3, blob)


def test_ofs_delta_chain() -> None:
    contents = [b"line\n" * 50]
    for i in range(6):
        contents.append(contents[-1] + b"more %d\n" % i)
    entries = [whole_entry(3, contents[0])]
    offsets = [12]
    for prev, cur in itertools.pairwise(contents):
        at = offsets[-1] + len(entries[-1])
        entries.append(ofs_delta_entry(at - offsets[-1], make_delta(prev, cur)))
        offsets.append(at)
    stored = index_pack(make_pack(entries))
    assert stored.oids == [git_oid(3, c) for c in contents]
    cache = DeltaBaseCache()
    for pos in reversed(range(len(contents))):
        assert read_pack_object(stored, pos, cache) == (3, contents[pos])


# -- corrupt packs ----------------------------------------------------------------------------


def _good_pack() -> bytes:
    base = b"hello world\n" * 10
    return make_pack(
        [whole_entry(3, base), ref_delta_entry(git_oid(3, base), make_delta(base, base + b"!\n"))]
    )


def _corruptions() -> list:
    good = _good_pack()
    body = good[:-20]
    first_zlib = 12 + len(obj_header(3, 120))
    cases = {
        "bad-checksum": body + bytes(20),
        "flipped-byte": body[:40] + bytes([body[40] ^ 0xFF]) + body[41:] + good[-20:],
        "truncated-trailer": good[:-1],
        "truncated-half": good[: len(good) // 2],
        "truncated-header": good[:10],
        "empty": b"",
        "bad-signature": reseal(b"KCAP" + body[4:]),
        "version-4": reseal(body[:4] + struct.pack(">I", 4) + body[8:]),
        "bad-zlib": reseal(body[: first_zlib + 2] + b"\xff\xff\xff" + body[first_zlib + 5 :]),
        "count-too-high": reseal(body[:8] + struct.pack(">I", 3) + body[12:]),
        "count-too-low": reseal(body[:8] + struct.pack(">I", 1) + body[12:]),
        "garbage-after-objects": reseal(body + b"\x00junk"),
        "missing-delta-base": make_pack([ref_delta_entry(b"1" * 40, make_delta(b"x" * 10, b"x" * 11))]),
        "invalid-type-5": make_pack([obj_header(5, 3) + zlib.compress(b"abc")]),
        "size-mismatch": make_pack([obj_header(3, 4) + zlib.compress(b"abc")]),
        "ofs-before-start": make_pack(
            [
                whole_entry(3, b"abc"),
                obj_header(6, 5) + encode_ofs_distance(100) + zlib.compress(make_delta(b"abc", b"abcd")),
            ]
        ),
        "delta-wrong-base-size": make_pack(
            [whole_entry(3, b"abc"), ref_delta_entry(git_oid(3, b"abc"), make_delta(b"abcdef", b"abcdefg"))]
        ),
        "header-cut-in-entry": reseal(body[:12] + b"\x9f"),
    }
    return [pytest.param(data, id=name) for name, data in cases.items()]


@pytest.mark.parametrize("data", _corruptions())
def test_corrupt_pack_is_rejected_and_store_unchanged(data: bytes) -> None:
    store = store_with((3, b"already here\n"))
    before = (len(store), store.packs, sorted(store.iter_oids()))
    with pytest.raises(PackFormatError):
        store.index_pack(data)
    assert (len(store), store.packs, sorted(store.iter_oids())) == before


def test_the_good_pack_is_good() -> None:
    """The corruption cases start from a valid pack."""
    stored = index_pack(_good_pack())
    assert len(stored) == 2


def test_stored_corruption_is_a_corrupt_object() -> None:
    stored = index_pack(_good_pack())
    bad = bytearray(stored.data)
    at = stored.offsets[0] + len(encode_object_header(3, 120)) + 3
    bad[at] ^= 0xFF
    stored.data = bytes(bad)
    with pytest.raises(CorruptObject):
        read_pack_object(stored, 0)


# -- properties -------------------------------------------------------------------------------

blobs = st.lists(st.binary(max_size=2000), min_size=0, max_size=12)


@settings(max_examples=60, deadline=None)
@given(blobs, st.integers(min_value=0, max_value=9))
def test_whole_object_packs_roundtrip(contents: list[bytes], level: int) -> None:
    contents = list(dict.fromkeys(contents))  # git refuses a pack holding one object twice
    pack = make_pack([whole_entry(3, c, level) for c in contents])
    stored = index_pack(pack)
    assert stored.oids == [git_oid(3, c) for c in contents]
    for pos, c in enumerate(contents):
        assert read_pack_object(stored, pos) == (3, c)


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=1, max_size=3000), st.lists(st.binary(max_size=300), min_size=1, max_size=5))
def test_delta_packs_roundtrip(base: bytes, suffixes: list[bytes]) -> None:
    versions = [base]
    for i, s in enumerate(suffixes):  # each version distinct: a pack holds an object once
        versions.append(versions[-1][: len(versions[-1]) // 2] + s + b"<%d>" % i)
    entries = [whole_entry(3, base)]
    for prev, cur in itertools.pairwise(versions):
        entries.append(ref_delta_entry(git_oid(3, prev), make_delta(prev, cur)))
    stored = index_pack(make_pack(entries))
    assert stored.oids == [git_oid(3, v) for v in versions]
    for pos, v in enumerate(versions):
        assert read_pack_object(stored, pos) == (3, v)


@given(st.sampled_from([1, 2, 3, 4, 6, 7]), st.integers(min_value=0, max_value=2**40))
def test_entry_header_roundtrip(pack_type: int, size: int) -> None:
    header = encode_object_header(pack_type, size)
    assert header == obj_header(pack_type, size)
    extra = encode_ofs_distance(5) if pack_type == 6 else (b"\x01" * 20 if pack_type == 7 else b"")
    data = b"\x00" * 100 + header + extra
    parsed = parse_entry_header(data, 100)
    assert (parsed.pack_type, parsed.size) == (pack_type, size)
    assert parsed.data_start == 100 + len(header) + len(extra)
    if pack_type == 6:
        assert parsed.base == 95


def test_object_id_is_gits() -> None:
    assert object_id(3, b"") == b"e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
    assert object_id(3, b"hello\n") == git_oid(3, b"hello\n")


# -- the delta base cache ---------------------------------------------------------------------


def test_delta_base_cache_is_bounded() -> None:
    cache = DeltaBaseCache(max_bytes=1000)
    for i in range(50):
        cache.put((1, i), (3, b"x" * 100))
    assert cache.get((1, 49)) == (3, b"x" * 100)
    assert cache.get((1, 0)) is None
    held = sum(cache.get((1, i)) is not None for i in range(50))
    assert 1 <= held <= 10


def test_delta_base_cache_skips_huge_values() -> None:
    cache = DeltaBaseCache(max_bytes=800)
    cache.put((1, 1), (3, b"y" * 200))  # more than an eighth of the budget
    assert cache.get((1, 1)) is None


def test_delta_base_cache_lru_order() -> None:
    cache = DeltaBaseCache(max_bytes=800)
    for i in range(8):
        cache.put((0, i), (3, bytes([i]) * 100))
    assert all(cache.get((0, i)) is not None for i in range(8))
    assert cache.get((0, 0)) is not None  # touch 0: 1 is now the oldest
    cache.put((0, 8), (3, b"z" * 100))
    assert cache.get((0, 1)) is None
    assert cache.get((0, 0)) == (3, bytes([0]) * 100)
    assert cache.get((0, 8)) == (3, b"z" * 100)
