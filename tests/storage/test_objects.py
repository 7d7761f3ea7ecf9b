"""The in-memory object store: loose arena, packs, lookups, and the quarantine view."""

from __future__ import annotations

import pytest

from storage.errors import ObjectNotFound
from storage.objects import MemoryObjectStore, QuarantineView
from storage.packs import index_pack
from tests.helpers import BIG_V1, BIG_V2, C6, git, git_oid, make_pack, whole_entry


def test_add_object_uses_gits_ids(tmp_path) -> None:
    store = MemoryObjectStore()
    data = b"some content\n"
    oid = store.add_object(3, data)
    assert oid == git("hash-object", "--stdin", input=data).stdout.strip()
    assert store.has(oid) and oid in store
    assert store.get(oid) == (3, data)
    assert store.type_of(oid) == 3
    assert store.size_of(oid) == len(data)
    assert len(store) == 1


def test_add_object_twice_keeps_one() -> None:
    store = MemoryObjectStore()
    a = store.add_object(3, b"x")
    b = store.add_object(3, b"x")
    assert a == b
    assert len(store) == 1


def test_missing_object() -> None:
    store = MemoryObjectStore()
    missing = b"1" * 40
    assert not store.has(missing)
    for fn in (store.get, store.type_of, store.packed_record, store.size_of):
        with pytest.raises(ObjectNotFound) as info:
            fn(missing)
        assert info.value.oid == missing
    with pytest.raises(KeyError):  # ObjectNotFound is also a KeyError, for mapping-like callers
        store.get(missing)


def test_store_holds_the_transcript_repository(served, repo_c6) -> None:
    listed = git("--git-dir", served.repo, "cat-file", "--batch-all-objects", "--batch-check").stdout
    for line in listed.splitlines():
        oid, type_name, size = line.split()
        assert repo_c6.objects.type_of(oid) == {b"commit": 1, b"tree": 2, b"blob": 3, b"tag": 4}[type_name]
        assert repo_c6.objects.size_of(oid) == int(size)
        assert len(repo_c6.objects.get(oid)[1]) == int(size)
    assert len(repo_c6.objects) == len(listed.splitlines()) == 32


def test_packed_record_of_a_stored_delta(repo_c6) -> None:
    rec = repo_c6.objects.packed_record(BIG_V2)
    assert rec.type_num == 3
    assert rec.base == BIG_V1
    assert rec.size == 645  # the delta's size, as stored
    whole = repo_c6.objects.packed_record(BIG_V1)
    assert whole.base is None and whole.size == 40960


def test_packed_record_of_a_loose_object() -> None:
    store = MemoryObjectStore()
    oid = store.add_object(3, b"loose\n")
    rec = store.packed_record(oid)
    assert (rec.type_num, rec.size, rec.base) == (3, 6, None)


def test_iter_oids_and_packs(repo_c8) -> None:
    oids = list(repo_c8.objects.iter_oids())
    assert len(oids) == len(repo_c8.objects) == 38
    assert set(oids) >= {C6}
    assert len(repo_c8.objects.packs) == 1


def test_newest_pack_wins_and_older_still_serves() -> None:
    store = MemoryObjectStore()
    a, b = b"object a\n", b"object b\n"
    store.add_pack(index_pack(make_pack([whole_entry(3, a)])))
    store.add_pack(index_pack(make_pack([whole_entry(3, a), whole_entry(3, b)])))
    assert store.get(git_oid(3, a)) == (3, a)
    assert store.get(git_oid(3, b)) == (3, b)
    assert len(store.packs) == 2


def test_quarantine_view_sees_both_and_store_sees_nothing_new() -> None:
    store = MemoryObjectStore()
    old = store.add_object(3, b"old\n")
    pack = store.index_pack(make_pack([whole_entry(3, b"new\n"), whole_entry(3, b"old\n")]))
    view = QuarantineView(store, pack)
    new = git_oid(3, b"new\n")
    assert view.has(new) and view.has(old)
    assert view.get(new) == (3, b"new\n")
    assert view.type_of(old) == 3
    assert view.is_new(new) and not view.is_new(old)
    assert not store.has(new)
    assert len(store) == 1
