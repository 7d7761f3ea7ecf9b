"""The pack writer: valid packs (as git judges them) that reuse stored data and deltas."""

from __future__ import annotations

import hashlib
import struct
import zlib

import pytest

from protocol.packwriter import PackStats, generate_pack
from storage.objects import MemoryObjectStore
from storage.packs import index_pack, parse_entry_header, read_pack_object
from tests.helpers import (
    BIG_V1,
    BIG_V2,
    C2,
    C6,
    C7,
    V1_0,
    git,
    git_index_pack,
    git_oid,
    make_delta,
    make_pack,
    ref_delta_entry,
    whole_entry,
)


def entries(pack: bytes) -> list[tuple[int, int | bytes | None]]:
    """(type, base) of every entry of a pack, walked with zlib alone (no pack index)."""
    return [(h.pack_type, h.base) for h in (parse_entry_header(pack, o) for o in entry_offsets(pack))]


def entry_offsets(pack: bytes) -> list[int]:
    count = struct.unpack(">I", pack[8:12])[0]
    offsets = []
    offset = 12
    for _ in range(count):
        offsets.append(offset)
        h = parse_entry_header(pack, offset)
        d = zlib.decompressobj()
        d.decompress(pack[h.data_start :])
        offset = len(pack) - len(d.unused_data)
    return offsets


def write(store, oids, **kwargs) -> tuple[bytes, PackStats, list[bytes]]:
    stats = PackStats()
    pieces = list(generate_pack(store, oids, stats=stats, **kwargs))
    return b"".join(pieces), stats, pieces


@pytest.fixture
def everything(repo_c6) -> list[bytes]:
    order, _ = repo_c6.graph.objects_to_send([C6, C7, C2, V1_0], [])
    return order


def test_full_pack_is_valid_for_git(repo_c6, everything, tmp_path) -> None:
    pack, stats, _ = write(repo_c6.objects, everything)
    assert pack[:4] == b"PACK"
    assert struct.unpack(">II", pack[4:12]) == (2, 32)
    assert hashlib.sha1(pack[:-20]).digest() == pack[-20:]
    assert stats.objects == 32
    assert stats.size == len(pack)
    target = tmp_path / "check.git"
    git("init", "-q", "--bare", target)
    result = git_index_pack(target, pack, "--strict")
    assert result.returncode == 0, result.stderr
    # git holds the same objects afterwards
    listed = git("--git-dir", target, "cat-file", "--batch-all-objects", "--batch-check=%(objectname)").stdout
    assert set(listed.split()) == set(everything)


def test_full_pack_reuses_stored_deltas(repo_c6, everything) -> None:
    pack, stats, _ = write(repo_c6.objects, everything)
    assert stats.reused_deltas > 0
    assert stats.reused == stats.objects  # nothing was recompressed
    kinds = entries(pack)
    (source,) = repo_c6.objects.packs
    stored_deltas = sum(1 for t, _ in entries(source.data) if t in (6, 7))
    assert stored_deltas == 10  # as in the recorded clone pack
    assert sum(1 for t, _ in kinds if t == 6) == stats.deltas == stats.reused_deltas == stored_deltas
    # the stored 645-byte delta of data/big.txt went out as is
    recorded = repo_c6.objects.packed_record(BIG_V2)
    assert bytes(recorded.compressed) in pack


def test_bases_are_written_before_their_deltas(repo_c6) -> None:
    # ask for the delta first and its base last
    pack, stats, _ = write(repo_c6.objects, [BIG_V2, C6, BIG_V1])
    stored = index_pack(pack)
    assert set(stored.oids) == {BIG_V2, C6, BIG_V1}
    assert stored.oids.index(BIG_V1) < stored.oids.index(BIG_V2)
    assert stats.reused_deltas == 1
    for pos, oid in enumerate(stored.oids):
        assert read_pack_object(stored, pos) == repo_c6.objects.get(oid)


def test_ref_deltas_when_ofs_delta_not_asked(repo_c6, everything, tmp_path) -> None:
    pack, stats, _ = write(repo_c6.objects, everything, ofs_delta=False)
    kinds = entries(pack)
    assert not any(t == 6 for t, _ in kinds)
    assert sum(1 for t, _ in kinds if t == 7) == stats.reused_deltas > 0
    target = tmp_path / "check.git"
    git("init", "-q", "--bare", target)
    assert git_index_pack(target, pack, "--strict").returncode == 0


def test_delta_without_its_base_is_sent_whole(repo_c6, tmp_path) -> None:
    pack, stats, _ = write(repo_c6.objects, [BIG_V2])
    assert stats.reused_deltas == 0 and stats.deltas == 0
    assert [t for t, _ in entries(pack)] == [3]
    stored = index_pack(pack)
    assert stored.oids == [BIG_V2]
    target = tmp_path / "check.git"
    git("init", "-q", "--bare", target)
    assert git_index_pack(target, pack).returncode == 0


def test_thin_pack_against_what_the_client_has(served, repo_c6, tmp_path) -> None:
    order, known = repo_c6.graph.objects_to_send([C6], [C2])
    assert BIG_V1 in known and BIG_V2 in order
    pack, stats, _ = write(repo_c6.objects, order, client_has=known)
    assert stats.reused_deltas > 0
    assert any(t == 7 and base == BIG_V1 for t, base in entries(pack))
    # thin: an empty repository cannot take it ...
    empty = tmp_path / "empty.git"
    git("init", "-q", "--bare", empty)
    assert git_index_pack(empty, pack).returncode != 0
    # ... a client holding c2 can, with --fix-thin
    client = tmp_path / "client.git"
    git("init", "-q", "--bare", client)
    c2_pack = git("--git-dir", served.repo, "pack-objects", "--stdout", "--revs", input=C2 + b"\n").stdout
    assert git_index_pack(client, c2_pack).returncode == 0
    result = git_index_pack(client, pack, "--fix-thin", "--strict")
    assert result.returncode == 0, result.stderr
    # and govc completes it against such a store
    store = MemoryObjectStore()
    store.add_pack(index_pack(c2_pack))
    completed = store.index_pack(pack)
    assert set(order) <= set(completed.oids)


def test_no_thin_pack_without_client_has(repo_c6, tmp_path) -> None:
    order, _ = repo_c6.graph.objects_to_send([C6], [C2])
    pack, _, _ = write(repo_c6.objects, order)
    assert not any(t == 7 for t, _ in entries(pack))
    index_pack(pack)  # stands alone


@pytest.mark.parametrize("chunk_size", [1, 7, 1000, 4096])
def test_chunking_does_not_change_the_pack(repo_c6, everything, chunk_size: int) -> None:
    whole, _, _ = write(repo_c6.objects, everything)
    pack, _, pieces = write(repo_c6.objects, everything, chunk_size=chunk_size)
    assert pack == whole
    assert all(len(p) == chunk_size for p in pieces[:-1])
    assert 0 < len(pieces[-1]) <= chunk_size + 20 or chunk_size == 1


def test_default_chunks_fill_two_side_band_packets(repo_c6, everything) -> None:
    _, _, pieces = write(repo_c6.objects, everything, chunk_size=2 * 65515)
    assert len(pieces) == 1  # the whole pack is smaller than one chunk


def test_empty_pack() -> None:
    pack, stats, _ = write(MemoryObjectStore(), [])
    assert pack == make_pack([])
    assert stats.objects == 0


def test_loose_objects_are_copied_compressed() -> None:
    store = MemoryObjectStore()
    oids = [store.add_object(3, b"loose %d\n" % i) for i in range(5)]
    pack, stats, _ = write(store, oids)
    assert stats.reused == 5
    assert index_pack(pack).oids == oids


def test_delta_chain_across_stored_deltas() -> None:
    """A stored chain v3 -> v2 -> v1: asking for v3 and v1 only sends v3 whole (its base v2 is
    not sent); asking for all three keeps both deltas."""
    v1 = b"base line\n" * 30
    v2 = v1 + b"two\n"
    v3 = v2 + b"three\n"
    store = MemoryObjectStore()
    store.add_pack(
        index_pack(
            make_pack(
                [
                    whole_entry(3, v1),
                    ref_delta_entry(git_oid(3, v1), make_delta(v1, v2)),
                    ref_delta_entry(git_oid(3, v2), make_delta(v2, v3)),
                ]
            )
        )
    )
    ids = [git_oid(3, v) for v in (v1, v2, v3)]
    pack, stats, _ = write(store, [ids[2], ids[0]])
    assert stats.reused_deltas == 0
    assert {read_pack_object(index_pack(pack), i)[1] for i in range(2)} == {v1, v3}
    pack, stats, _ = write(store, list(reversed(ids)))
    assert stats.reused_deltas == 2
    stored = index_pack(pack)
    assert stored.oids == ids  # bases first
