"""The in-memory ref store: atomic compare-and-swap, D/F conflicts, reflogs, names, symbolic HEAD."""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from storage.errors import InvalidRefName, RefConflict, RefDirectoryConflict, StaleRef
from storage.interfaces import ANY, ZERO_OID, RefUpdate
from storage.refnames import is_valid_ref_name
from storage.refs import MemoryRefStore
from tests.helpers import git, have_git

A = b"a" * 40
B = b"b" * 40
C = b"c" * 40


@pytest.fixture
def refs() -> MemoryRefStore:
    store = MemoryRefStore()
    store.update(
        [RefUpdate("refs/heads/main", A), RefUpdate("refs/heads/dev", B)], who="setup", message="init"
    )
    return store


def state(store: MemoryRefStore):
    return (store.items(), {n: store.reflog(n) for n, _ in store.items()}, store.version)


# -- compare-and-swap -------------------------------------------------------------------------


def test_create_update_delete(refs: MemoryRefStore) -> None:
    refs.update([RefUpdate("refs/heads/main", C, A)])
    assert refs.get("refs/heads/main") == C
    refs.update([RefUpdate("refs/heads/dev", None, B)])
    assert refs.get("refs/heads/dev") is None
    assert refs.list() == {"refs/heads/main": C}


def test_stale_old_value_raises_and_changes_nothing(refs: MemoryRefStore) -> None:
    before = state(refs)
    with pytest.raises(StaleRef) as info:
        refs.update([RefUpdate("refs/heads/main", C, B)])
    assert info.value.name == "refs/heads/main"
    assert info.value.expected == B and info.value.actual == A
    assert state(refs) == before


def test_stale_message_is_gits(refs: MemoryRefStore) -> None:
    with pytest.raises(StaleRef) as info:
        refs.update([RefUpdate("refs/heads/main", C, B)])
    assert str(info.value) == (
        f"cannot lock ref 'refs/heads/main': is at {A.decode()} but expected {B.decode()}"
    )


def test_multi_ref_update_is_all_or_nothing(refs: MemoryRefStore) -> None:
    before = state(refs)
    with pytest.raises(StaleRef):
        refs.update(
            [
                RefUpdate("refs/heads/main", C, A),  # fine
                RefUpdate("refs/heads/new", C, None),  # fine
                RefUpdate("refs/heads/dev", C, A),  # stale: dev is at B
            ]
        )
    assert state(refs) == before
    refs.update(
        [
            RefUpdate("refs/heads/main", C, A),
            RefUpdate("refs/heads/new", C, None),
            RefUpdate("refs/heads/dev", C, B),
        ],
        who="w",
        message="all three",
    )
    assert refs.list() == {"refs/heads/dev": C, "refs/heads/main": C, "refs/heads/new": C}


def test_must_not_exist(refs: MemoryRefStore) -> None:
    with pytest.raises(StaleRef):
        refs.update([RefUpdate("refs/heads/main", C, None)])
    with pytest.raises(StaleRef):
        refs.update([RefUpdate("refs/heads/main", C, ZERO_OID)])
    refs.update([RefUpdate("refs/heads/other", C, ZERO_OID)])
    assert refs.get("refs/heads/other") == C


def test_delete_with_expected_value(refs: MemoryRefStore) -> None:
    with pytest.raises(StaleRef):
        refs.update([RefUpdate("refs/heads/dev", None, A)])
    assert refs.get("refs/heads/dev") == B
    refs.update([RefUpdate("refs/heads/dev", ZERO_OID, B)])  # the zero id deletes too
    assert refs.get("refs/heads/dev") is None


def test_unchecked_update(refs: MemoryRefStore) -> None:
    refs.update([RefUpdate("refs/heads/main", C, ANY)])
    assert refs.get("refs/heads/main") == C


def test_same_ref_twice_in_one_transaction(refs: MemoryRefStore) -> None:
    before = state(refs)
    with pytest.raises(RefConflict):
        refs.update([RefUpdate("refs/heads/x", A), RefUpdate("refs/heads/x", B)])
    assert state(refs) == before


def test_persist_failure_changes_nothing(refs: MemoryRefStore) -> None:
    before = state(refs)
    seen = []

    def persist(changes, log) -> None:
        seen.append((dict(changes), [name for name, _ in log]))
        raise OSError("disk full")

    with pytest.raises(OSError):
        refs.update(
            [RefUpdate("refs/heads/main", C, A), RefUpdate("refs/heads/dev", None, B)], persist=persist
        )
    assert seen == [({"refs/heads/main": C, "refs/heads/dev": None}, ["refs/heads/main", "refs/heads/dev"])]
    assert state(refs) == before


def test_concurrent_compare_and_swap_loses_no_update() -> None:
    """Threads race to advance one ref by CAS; every acknowledged update is in the reflog, in order."""
    store = MemoryRefStore()
    store.update([RefUpdate("refs/heads/n", b"%040d" % 1)])  # (all zeros would mean "delete")
    wins = [0] * 6

    def worker(k: int) -> None:
        deadline = time.monotonic() + 5
        while sum(wins) < 300 and time.monotonic() < deadline:
            cur = store.get("refs/heads/n")
            nxt = b"%040d" % (int(cur) + 1)
            try:
                store.update([RefUpdate("refs/heads/n", nxt, cur)], who=f"t{k}")
            except StaleRef:
                continue
            wins[k] += 1

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log = store.reflog("refs/heads/n")
    assert int(store.get("refs/heads/n")) - 1 == sum(wins) == len(log) - 1
    for prev, entry in itertools.pairwise(log):
        assert entry.old == prev.new  # a chain: no update was lost or applied twice


# -- directory/file conflicts -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("existing", "new"),
    [
        ("refs/heads/a", "refs/heads/a/b"),
        ("refs/heads/a/b", "refs/heads/a"),
        ("refs/heads/a", "refs/heads/a/b/c"),
        ("refs/heads/a/b/c", "refs/heads/a"),
    ],
)
def test_directory_file_conflict(existing: str, new: str) -> None:
    store = MemoryRefStore()
    store.update([RefUpdate(existing, A)])
    before = state(store)
    with pytest.raises(RefDirectoryConflict) as info:
        store.update([RefUpdate(new, B, None)])
    assert info.value.name == new
    assert state(store) == before


def test_directory_file_conflict_within_one_transaction() -> None:
    store = MemoryRefStore()
    with pytest.raises(RefDirectoryConflict):
        store.update([RefUpdate("refs/heads/x", A), RefUpdate("refs/heads/x/y", B)])
    assert store.items() == []


def test_no_conflict_for_siblings_and_prefixes() -> None:
    store = MemoryRefStore()
    store.update([RefUpdate("refs/heads/a", A)])
    store.update([RefUpdate("refs/heads/ab", B), RefUpdate("refs/heads/a-b/c", C)])
    assert len(store) == 3


def test_delete_and_recreate_as_directory_in_one_transaction() -> None:
    store = MemoryRefStore()
    store.update([RefUpdate("refs/heads/a", A)])
    store.update([RefUpdate("refs/heads/a", None, A), RefUpdate("refs/heads/a/b", B, None)])
    assert store.list() == {"refs/heads/a/b": B}


# -- reflog -----------------------------------------------------------------------------------


def test_reflog_entries(refs: MemoryRefStore) -> None:
    t0 = time.time()
    refs.update([RefUpdate("refs/heads/main", C, A)], who="alice <a@example.com>", message="push")
    refs.update([RefUpdate("refs/heads/main", None, C)], who="bob", message="delete")
    t1 = time.time()
    log = refs.reflog("refs/heads/main")
    assert [(e.old, e.new, e.who, e.message) for e in log] == [
        (ZERO_OID, A, "setup", "init"),
        (A, C, "alice <a@example.com>", "push"),
        (C, ZERO_OID, "bob", "delete"),
    ]
    assert t0 <= log[1].when <= log[2].when <= t1


def test_failed_update_writes_no_reflog(refs: MemoryRefStore) -> None:
    with pytest.raises(StaleRef):
        refs.update([RefUpdate("refs/heads/main", C, B)], who="x", message="nope")
    assert len(refs.reflog("refs/heads/main")) == 1


def test_reflog_of_unknown_ref_is_empty() -> None:
    assert MemoryRefStore().reflog("refs/heads/none") == []


# -- symbolic HEAD ----------------------------------------------------------------------------


def test_head_is_symbolic(refs: MemoryRefStore) -> None:
    assert refs.read_symref("HEAD") == "refs/heads/main"
    assert refs.get("HEAD") == A
    refs.set_symref("HEAD", "refs/heads/dev")
    assert refs.get("HEAD") == B
    assert refs.reflog("HEAD") == refs.reflog("refs/heads/dev")


def test_unborn_head() -> None:
    store = MemoryRefStore()
    assert store.read_symref("HEAD") == "refs/heads/main"
    assert store.get("HEAD") is None
    assert store.items() == []


def test_update_through_head_moves_the_branch(refs: MemoryRefStore) -> None:
    refs.update([RefUpdate("HEAD", C, A)])
    assert refs.get("refs/heads/main") == C
    assert "HEAD" not in refs.list()


@pytest.mark.parametrize("target", ["refs/heads/a..b", "main", "refs/heads/"])
def test_symref_target_must_be_a_valid_ref(refs: MemoryRefStore, target: str) -> None:
    with pytest.raises(InvalidRefName):
        refs.set_symref("HEAD", target)
    assert refs.read_symref("HEAD") == "refs/heads/main"


def test_head_cannot_point_at_itself(refs: MemoryRefStore) -> None:
    """``git symbolic-ref HEAD HEAD`` refuses ("Refusing to point HEAD outside of refs/"): a HEAD
    that names itself is a loop, not a branch."""
    with pytest.raises(InvalidRefName):
        refs.set_symref("HEAD", "HEAD")
    assert refs.read_symref("HEAD") == "refs/heads/main"
    assert refs.get("HEAD") == A


def test_listing_is_sorted_and_by_prefix(refs: MemoryRefStore) -> None:
    refs.update([RefUpdate("refs/tags/v1", C), RefUpdate("refs/heads/a", C)])
    assert [n for n, _ in refs.items()] == sorted(n for n, _ in refs.items())
    assert set(refs.list("refs/heads/")) == {"refs/heads/a", "refs/heads/dev", "refs/heads/main"}
    assert refs.list("refs/tags/") == {"refs/tags/v1": C}


def test_version_moves_on_change_only(refs: MemoryRefStore) -> None:
    v = refs.version
    with pytest.raises(StaleRef):
        refs.update([RefUpdate("refs/heads/main", C, B)])
    assert refs.version == v
    refs.update([RefUpdate("refs/heads/main", C, A)])
    assert refs.version > v


# -- ref names --------------------------------------------------------------------------------

NAMES = [
    "refs/heads/main",
    "refs/heads/feature/x-1",
    "refs/tags/v1.0",
    "refs/heads/ünïcode",
    "refs/heads/@",
    "refs/heads/a@b",
    "refs/heads/a.b",
    "refs/heads/a_b",
    "refs/heads/-dash",
    "refs/heads/x{y}",
    "refs/notes/commits",
    "refs/heads",
    "refs/heads/a..b",
    "refs/heads/.hidden",
    "refs/heads/a/.b",
    "refs/heads/a.lock",
    "refs/heads/a.lock/b",
    "refs/heads/a/",
    "refs/heads//a",
    "refs/heads/a.",
    "refs/heads/a@{1}",
    "refs/heads/a b",
    "refs/heads/a~1",
    "refs/heads/a^",
    "refs/heads/a:b",
    "refs/heads/a?",
    "refs/heads/a*",
    "refs/heads/a[b",
    "refs/heads/a\\b",
    "refs/heads/a\tb",
    "refs/heads/a\x7fb",
    "refs/heads/a\x01b",
    "refs/heads/lock.lockx",
    "refs/heads/.lock",
    "refs/heads/a/b.",
    "refs/heads/a./b",
]


@pytest.mark.parametrize("name", NAMES)
def test_ref_names_as_git_check_ref_format(name: str) -> None:
    if not have_git():
        pytest.skip("git is not installed")
    expected = git("check-ref-format", name, check=False).returncode == 0
    assert is_valid_ref_name(name) == expected


@pytest.mark.parametrize(
    "name", ["refs/heads/a..b", "refs/heads/a b", "refs/heads/x.lock", "main", "refs/heads/"]
)
def test_invalid_names_are_rejected_by_the_store(refs: MemoryRefStore, name: str) -> None:
    before = state(refs)
    with pytest.raises(InvalidRefName):
        refs.update([RefUpdate(name, C)])
    assert state(refs) == before


def test_head_and_non_refs_names() -> None:
    assert is_valid_ref_name("HEAD")
    assert not is_valid_ref_name("heads/main")
    assert not is_valid_ref_name("@")
    assert not is_valid_ref_name("")
