"""The embedded durable backend on real files: the data directory, packs on disk, refs in SQLite,
and what a Repository and a Registry see when they start again on the same directory."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from govc.registry import Registry
from govc.repository import Repository
from storage.disk import (
    FORMAT,
    FORMAT_VERSION,
    DataDirectory,
    DataDirectoryError,
    StaleRefOnDisk,
    pack_from_objects,
)
from storage.errors import StorageError
from storage.interfaces import ZERO_OID, ReflogEntry, RefUpdate
from storage.packs import StoredPack, index_pack
from tests.helpers import TYPE_NUMS, git, git_oid

MAIN = "refs/heads/main"


# --------------------------------------------------------------------------------------------
# helpers


def pack_objects(repo: Path, *revs: str, thin: bool = False, ofs: bool = True) -> bytes:
    """``git pack-objects --stdout`` of ``revs`` (``--all`` when none) in ``repo``."""
    args = ["-C", repo, "pack-objects", "--stdout", "-q"]
    if ofs:
        args.append("--delta-base-offset")
    if thin:
        args.append("--thin")
    if revs:
        return git(*args, "--revs", input="".join(f"{r}\n" for r in revs).encode()).stdout
    return git(*args, "--all", input=b"").stdout


def rev(repo: Path, name: str) -> bytes:
    return git("-C", repo, "rev-parse", "--verify", name).stdout.strip()


def git_refs(repo: Path) -> dict[str, bytes]:
    out = git("-C", repo, "for-each-ref", "--format=%(refname) %(objectname)").stdout.decode()
    return {name: oid.encode() for name, oid in (line.split() for line in out.splitlines())}


def git_objects(repo: Path) -> dict[bytes, tuple[int, bytes]]:
    """Every object reachable from a ref of ``repo``: ``{oid: (type number, content)}``."""
    listing = git("-C", repo, "rev-list", "--all", "--objects").stdout
    oids = [line.split(b" ", 1)[0] for line in listing.splitlines()]
    raw = git("-C", repo, "cat-file", "--batch", input=b"\n".join(oids) + b"\n").stdout
    objects: dict[bytes, tuple[int, bytes]] = {}
    pos = 0
    while pos < len(raw):
        eol = raw.index(b"\n", pos)
        oid, kind, size = raw[pos:eol].split()
        start = eol + 1
        objects[oid] = (TYPE_NUMS[kind.decode()], raw[start : start + int(size)])
        pos = start + int(size) + 1
    return objects


def db_rows(data: Path, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Read the data directory's SQLite database with a connection of our own."""
    db = sqlite3.connect(data / "govc.db")
    try:
        return list(db.execute(sql, args))
    finally:
        db.close()


def entry(old: bytes, new: bytes, when: float = 1_700_000_000.25) -> ReflogEntry:
    return ReflogEntry(old, new, "alice", when, "push")


def same_pack(a: StoredPack, b: StoredPack) -> None:
    assert a.name == b.name
    assert a.data == b.data
    assert a.oids == b.oids
    assert list(a.offsets) == list(b.offsets)
    assert bytes(a.types) == bytes(b.types)
    assert list(a.sizes) == list(b.sizes)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def pack(git_history: Path) -> StoredPack:
    """Everything in the sample history as one pack, indexed the way a push is."""
    return index_pack(pack_objects(git_history))


# --------------------------------------------------------------------------------------------
# the data directory


def test_a_new_directory_gets_the_format_marker(data: Path) -> None:
    d = DataDirectory(data)
    assert json.loads((data / "govc.json").read_text()) == {"format": FORMAT, "version": FORMAT_VERSION}
    assert (data / "govc.db").is_file()
    assert db_rows(data, "PRAGMA journal_mode") == [("wal",)]
    assert d.repo_names() == []
    d.close()
    DataDirectory(data).close()  # and it opens again


def test_an_existing_empty_directory_is_adopted(data: Path) -> None:
    data.mkdir()
    DataDirectory(data).close()
    assert (data / "govc.json").exists()


@pytest.mark.parametrize(
    ("marker", "shown"),
    [
        ({"format": FORMAT, "version": FORMAT_VERSION + 1}, f"version {FORMAT_VERSION + 1}"),
        ({"format": FORMAT, "version": str(FORMAT_VERSION)}, "version '1'"),
        ({"format": "something-else", "version": FORMAT_VERSION}, "'something-else'"),
        ({"version": FORMAT_VERSION}, "format None"),
    ],
)
def test_another_format_or_version_is_refused(data: Path, marker: dict[str, object], shown: str) -> None:
    DataDirectory(data).close()
    (data / "govc.json").write_text(json.dumps(marker))
    with pytest.raises(DataDirectoryError) as caught:
        DataDirectory(data)
    message = str(caught.value)
    assert str(data) in message
    assert shown in message
    assert f"this govc reads {FORMAT!r} version {FORMAT_VERSION}" in message
    assert json.loads((data / "govc.json").read_text()) == marker  # left as it was


@pytest.mark.parametrize("text", ["{not json", "", "[1, 2]", '"govc-data"', "null"])
def test_a_damaged_marker_is_a_data_directory_error(data: Path, text: str) -> None:
    DataDirectory(data).close()
    (data / "govc.json").write_text(text)
    with pytest.raises(DataDirectoryError, match=r"govc\.json"):
        DataDirectory(data)


def test_a_non_empty_foreign_directory_is_refused(data: Path) -> None:
    data.mkdir()
    (data / "notes.txt").write_text("mine\n")
    with pytest.raises(DataDirectoryError, match="is not empty and is not a govc data directory"):
        DataDirectory(data)
    assert sorted(p.name for p in data.iterdir()) == ["notes.txt"]  # nothing written


def test_a_git_repository_is_not_a_data_directory(git_history: Path) -> None:
    before = sorted(p.name for p in git_history.iterdir())
    with pytest.raises(DataDirectoryError, match="not a govc data directory"):
        DataDirectory(git_history)
    assert sorted(p.name for p in git_history.iterdir()) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_a_read_only_directory_is_a_data_directory_error(tmp_path: Path) -> None:
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o500)
    try:
        with pytest.raises(DataDirectoryError, match="cannot use data directory"):
            DataDirectory(parent / "data")
        with pytest.raises(DataDirectoryError):
            DataDirectory(parent)  # exists and is empty, but govc.json cannot be written
    finally:
        parent.chmod(0o700)


def test_a_path_that_is_a_file_is_a_data_directory_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for path in (blocker, blocker / "data"):
        with pytest.raises(DataDirectoryError, match="cannot use data directory"):
            DataDirectory(path)


# --------------------------------------------------------------------------------------------
# DiskBackend: packs and refs round trip


def test_round_trip_through_a_fresh_directory(data: Path, pack: StoredPack, git_history: Path) -> None:
    refs = git_refs(git_history)
    d = DataDirectory(data)
    d.create_repo("team/app")
    backend = d.backend("team/app")
    backend.store_pack(pack)
    reflog = [(name, entry(ZERO_OID, oid)) for name, oid in refs.items()]
    event = json.dumps({"repository": "team/app", "changes": len(refs)})
    backend.commit_refs(refs, {"HEAD": "refs/heads/release/1.x"}, reflog, event)
    backend.commit_refs(
        {MAIN: refs["refs/heads/feature"]},
        {"HEAD": "refs/heads/release/1.x"},
        [(MAIN, entry(refs[MAIN], refs["refs/heads/feature"], 1_700_000_001.5))],
    )
    d.close()

    pack_dir = data / "repos" / "team" / "app.git" / "objects" / "pack"
    assert sorted(p.name for p in pack_dir.iterdir()) == [
        f"pack-{pack.name}.govc",
        f"pack-{pack.name}.idx",
        f"pack-{pack.name}.pack",
    ]
    again = DataDirectory(data)
    assert again.repo_names() == ["team/app"]
    snap = again.backend("team/app").load()
    assert snap.refs == {**refs, MAIN: refs["refs/heads/feature"]}
    assert snap.symrefs == {"HEAD": "refs/heads/release/1.x"}
    expected_logs = {name: [e] for name, e in reflog}
    expected_logs[MAIN].append(entry(refs[MAIN], refs["refs/heads/feature"], 1_700_000_001.5))
    assert snap.reflogs == expected_logs
    assert len(snap.packs) == 1
    same_pack(snap.packs[0], pack)
    assert snap.loose == []


def test_ref_delta_packs_round_trip_too(data: Path, git_history: Path) -> None:
    pack = index_pack(pack_objects(git_history, ofs=False))
    d = DataDirectory(data)
    d.create_repo("app")
    d.backend("app").store_pack(pack)
    d.close()
    (loaded,) = DataDirectory(data).backend("app").load().packs
    same_pack(loaded, pack)


def test_the_idx_is_the_one_git_writes(data: Path, pack: StoredPack, tmp_path: Path) -> None:
    d = DataDirectory(data)
    d.create_repo("app")
    d.backend("app").store_pack(pack)
    idx = d.pack_dir("app") / f"pack-{pack.name}.idx"
    verified = git("verify-pack", "-v", idx)
    assert verified.stdout.decode().rstrip().endswith(f"pack-{pack.name}.pack: ok")
    theirs = tmp_path / "git.idx"
    git("index-pack", "-o", theirs, d.pack_dir("app") / f"pack-{pack.name}.pack")
    assert idx.read_bytes() == theirs.read_bytes()


def test_the_repository_directory_reads_as_a_bare_git_object_store(
    data: Path, pack: StoredPack, git_history: Path
) -> None:
    d = DataDirectory(data)
    d.create_repo("app")
    d.backend("app").store_pack(pack)
    gitdir = data / "repos" / "app.git"
    assert git("-C", gitdir, "rev-parse", "--is-bare-repository").stdout.strip() == b"true"
    expected = git_objects(git_history)
    listing = git("--git-dir", gitdir, "cat-file", "--batch-all-objects", "--batch-check").stdout
    assert {line.split()[0] for line in listing.splitlines()} == set(expected)


@pytest.mark.parametrize(
    "damage",
    ["delete", "flip-a-byte", "truncate", "empty", "from-another-pack"],
)
def test_a_missing_or_damaged_govc_index_is_rebuilt(
    data: Path, pack: StoredPack, git_history: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    d = DataDirectory(data)
    d.create_repo("app")
    backend = d.backend("app")
    backend.store_pack(pack)
    sidecar = d.pack_dir("app") / f"pack-{pack.name}.govc"
    good = sidecar.read_bytes()
    if damage == "delete":
        sidecar.unlink()
    elif damage == "flip-a-byte":
        raw = bytearray(good)
        raw[len(raw) // 2] ^= 0x40
        sidecar.write_bytes(bytes(raw))
    elif damage == "truncate":
        sidecar.write_bytes(good[: len(good) // 3])
    elif damage == "empty":
        sidecar.write_bytes(b"")
    else:
        other = index_pack(pack_objects(git_history, "refs/heads/feature"))
        backend.store_pack(other)
        shutil.copyfile(d.pack_dir("app") / f"pack-{other.name}.govc", sidecar)
    d.close()

    with caplog.at_level(logging.WARNING, logger="govc.storage.disk"):
        packs = DataDirectory(data).backend("app").load().packs
    assert any("re-indexing" in r.getMessage() and pack.name in r.getMessage() for r in caplog.records)
    (loaded,) = [p for p in packs if p.name == pack.name]
    same_pack(loaded, pack)
    assert sidecar.read_bytes() == good  # rewritten
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="govc.storage.disk"):
        DataDirectory(data).backend("app").load()
    assert not [r for r in caplog.records if "re-indexing" in r.getMessage()]


def test_stray_temporary_files_are_removed_at_load(data: Path, pack: StoredPack) -> None:
    d = DataDirectory(data)
    d.create_repo("app")
    d.backend("app").store_pack(pack)
    pack_dir = d.pack_dir("app")
    strays = [
        pack_dir / f".pack-{'ab' * 20}.pack.tmp-4242-1234",
        pack_dir / f".pack-{'ab' * 20}.idx.tmp-4242-1234",
        pack_dir / f".pack-{pack.name}.govc.tmp-1-2",
    ]
    for stray in strays:
        stray.write_bytes(b"half a pack")
    d.close()
    snap = DataDirectory(data).backend("app").load()
    assert [p.name for p in snap.packs] == [pack.name]
    assert sorted(p.name for p in pack_dir.iterdir()) == [
        f"pack-{pack.name}.govc",
        f"pack-{pack.name}.idx",
        f"pack-{pack.name}.pack",
    ]


def test_a_pack_whose_refs_never_committed_is_loaded_and_harmless(data: Path, pack: StoredPack) -> None:
    d = DataDirectory(data)
    d.create_repo("app")
    d.backend("app").store_pack(pack)  # a crash here: objects durable, no ref moved
    d.close()
    repo = Repository.restore("app", DataDirectory(data).backend("app"))
    assert repo.is_empty()
    assert len(repo.objects) == len(pack)


def test_storing_a_pack_twice_is_a_no_op(data: Path, pack: StoredPack) -> None:
    d = DataDirectory(data)
    d.create_repo("app")
    backend = d.backend("app")
    backend.store_pack(pack)
    backend.store_pack(pack)
    assert len(list(d.pack_dir("app").glob("*.pack"))) == 1
    assert len(backend.load().packs) == 1


def test_store_objects_and_remove_packs(data: Path) -> None:
    d = DataDirectory(data)
    d.create_repo("app")
    backend = d.backend("app")
    objects = [(3, b"hello\n"), (3, b"world\n" * 100)]
    backend.store_objects(objects)
    backend.store_objects([])  # nothing to write: no empty pack
    (loaded,) = backend.load().packs
    assert sorted(loaded.oids) == sorted(git_oid(t, c) for t, c in objects)
    assert loaded.data == pack_from_objects(objects)
    backend.remove_packs([loaded])
    assert list(d.pack_dir("app").iterdir()) == []
    assert backend.load().packs == []


def test_an_unwritable_pack_directory_is_a_storage_error(data: Path, pack: StoredPack) -> None:
    d = DataDirectory(data)
    d.create_repo("app")
    pack_dir = d.pack_dir("app")
    shutil.rmtree(pack_dir)
    pack_dir.write_text("not a directory")  # fails for root too, unlike chmod
    with pytest.raises(StorageError, match="cannot store objects"):
        d.backend("app").store_pack(pack)


# --------------------------------------------------------------------------------------------
# DiskBackend: the ref transaction


def _table_counts(data: Path) -> dict[str, list[tuple[object, ...]]]:
    return {
        table: db_rows(data, f"SELECT * FROM {table} ORDER BY 1, 2")
        for table in ("repos", "refs", "symrefs", "reflog", "events")
    }


@pytest.mark.parametrize("claimed_old", ["other", "zero"])
def test_a_stale_old_value_raises_and_changes_nothing(
    data: Path, git_history: Path, claimed_old: str
) -> None:
    refs = git_refs(git_history)
    main, feature = refs[MAIN], refs["refs/heads/feature"]
    d = DataDirectory(data)
    d.create_repo("app")
    backend = d.backend("app")
    backend.commit_refs({MAIN: main}, {"HEAD": MAIN}, [(MAIN, entry(ZERO_OID, main))], '{"n": 1}')
    before = _table_counts(data)

    old = feature if claimed_old == "other" else ZERO_OID
    with pytest.raises(StaleRefOnDisk, match="refs/heads/main"):
        backend.commit_refs(
            # the first update is fine, the second is stale: neither may land
            {"refs/heads/new": feature, MAIN: feature},
            {"HEAD": "refs/heads/new"},
            [("refs/heads/new", entry(ZERO_OID, feature)), (MAIN, entry(old, feature))],
            '{"n": 2}',
        )
    assert _table_counts(data) == before
    # the directory is not left locked: the next transaction goes through
    backend.commit_refs({MAIN: feature}, {"HEAD": MAIN}, [(MAIN, entry(main, feature))])
    assert backend.load().refs == {MAIN: feature}


def test_deletions_and_events_are_recorded(data: Path, git_history: Path) -> None:
    refs = git_refs(git_history)
    d = DataDirectory(data)
    d.create_repo("app")
    d.create_repo("other")
    backend = d.backend("app")
    first = json.dumps({"repository": "app", "changes": [{"ref": MAIN}], "source": "push"})
    second = json.dumps({"repository": "app", "changes": [{"ref": "refs/tags/light"}], "source": "api"})
    backend.commit_refs(
        {MAIN: refs[MAIN], "refs/tags/light": refs["refs/tags/light"]},
        {"HEAD": MAIN},
        [(MAIN, entry(ZERO_OID, refs[MAIN])), ("refs/tags/light", entry(ZERO_OID, refs["refs/tags/light"]))],
        first,
    )
    backend.commit_refs(
        {"refs/tags/light": None},
        {"HEAD": MAIN},
        [("refs/tags/light", entry(refs["refs/tags/light"], ZERO_OID))],
        second,
    )
    d.backend("other").commit_refs({MAIN: refs["refs/heads/feature"]}, {}, [])

    rows = db_rows(data, "SELECT repo, payload FROM events ORDER BY id")
    assert rows == [("app", first), ("app", second)]
    assert [json.loads(str(p))["source"] for _, p in rows] == ["push", "api"]
    snap = d.backend("app").load()
    assert snap.refs == {MAIN: refs[MAIN]}
    assert [e.new for e in snap.reflogs["refs/tags/light"]] == [refs["refs/tags/light"], ZERO_OID]
    assert d.backend("other").load().refs == {MAIN: refs["refs/heads/feature"]}
    assert d.backend("other").load().symrefs == {}


def test_delete_repo_removes_its_rows_and_files(data: Path, pack: StoredPack, git_history: Path) -> None:
    refs = git_refs(git_history)
    d = DataDirectory(data)
    for name in ("app", "keep"):
        d.create_repo(name)
        d.backend(name).store_pack(pack)
        d.backend(name).commit_refs({MAIN: refs[MAIN]}, {"HEAD": MAIN}, [(MAIN, entry(ZERO_OID, refs[MAIN]))])
    d.delete_repo("app")
    assert d.repo_names() == ["keep"]
    assert not (data / "repos" / "app.git").exists()
    for table in ("refs", "symrefs", "reflog"):
        assert {r[0] for r in db_rows(data, f"SELECT repo FROM {table}")} == {"keep"}
    assert DataDirectory(data).backend("keep").load().refs == {MAIN: refs[MAIN]}


def test_delete_repo_removes_emptied_parent_directories(data: Path) -> None:
    d = DataDirectory(data)
    for name in ("team/app", "team/lib", "deep/a/b"):
        d.create_repo(name)
    d.delete_repo("team/app")
    assert (data / "repos" / "team" / "lib.git").is_dir()  # team/ still holds lib
    d.delete_repo("team/lib")
    d.delete_repo("deep/a/b")
    assert sorted(p.name for p in (data / "repos").iterdir()) == []


# --------------------------------------------------------------------------------------------
# Repository and Registry on a data directory


def test_a_push_sequence_survives_a_fresh_registry(data: Path, git_history: Path) -> None:
    src = git_history
    refs = git_refs(src)
    base = rev(src, "main~1")
    registry = Registry(DataDirectory(data))
    repo, created = registry.get_or_create("team/app.git")
    assert created
    events = []
    repo.subscribe(events.append)

    # push 1: main~1 and what it needs
    repo.add_pack(repo.objects.index_pack(pack_objects(src, "main~1")))
    repo.update_refs([RefUpdate(MAIN, base, None)], who="alice", message="push", source="push")
    # push 2: everything else, as a thin pack against what the server has
    thin = pack_objects(src, *refs, "^main~1", thin=True)
    repo.add_pack(repo.objects.index_pack(thin))
    repo.update_refs(
        [RefUpdate(name, oid, base if name == MAIN else None) for name, oid in refs.items()],
        who="bob",
        message="push",
        source="push",
        push_options=["ci.skip"],
    )
    repo.set_head("refs/heads/release/1.x")
    assert len(events) == 2
    registry.directory.close()

    again = Registry(DataDirectory(data))
    assert again.names() == ["team/app"]
    restored = again.get("team/app")
    assert restored is not None
    assert restored.refs.items() == sorted(refs.items())
    assert restored.head_target == "refs/heads/release/1.x"
    assert [(e.old, e.new, e.who) for e in restored.refs.reflog(MAIN)] == [
        (ZERO_OID, base, "alice"),
        (base, refs[MAIN], "bob"),
    ]
    assert restored.refs.reflog(MAIN) == repo.refs.reflog(MAIN)
    expected = git_objects(src)
    assert len(restored.objects) == len(repo.objects)
    for oid, (type_num, content) in expected.items():
        assert restored.objects.get(oid) == (type_num, content)
    # every pack on disk stands alone (the thin one was completed before it was written)
    for idx in registry.directory.pack_dir("team/app").glob("*.idx"):
        git("verify-pack", idx)
    events_on_disk = [json.loads(str(p)) for (p,) in db_rows(data, "SELECT payload FROM events ORDER BY id")]
    assert [e["who"] for e in events_on_disk] == ["alice", "bob"]
    assert events_on_disk[1]["push_options"] == ["ci.skip"]
    assert events_on_disk[1]["source"] == "push"
    assert {c["ref"]: c["new"] for c in events_on_disk[1]["changes"]} == {
        name: oid.decode() for name, oid in refs.items()
    }


def test_a_failed_ref_write_leaves_memory_unchanged(
    data: Path, git_history: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    refs = git_refs(git_history)
    registry = Registry(DataDirectory(data))
    repo = registry.create("app")
    repo.add_pack(repo.objects.index_pack(pack_objects(git_history)))
    repo.update_refs([RefUpdate(MAIN, refs[MAIN], None)], who="a", message="m", source="push")
    events = []
    repo.subscribe(events.append)
    before = (repo.refs.items(), repo.refs.reflog(MAIN), repo.head_target)
    on_disk = _table_counts(data)

    def broken(self: DataDirectory) -> object:
        raise sqlite3.OperationalError("disk I/O error")

    with monkeypatch.context() as patch:
        patch.setattr(DataDirectory, "transaction", broken)
        with pytest.raises(StorageError, match="disk I/O error"):
            repo.update_refs(
                [
                    RefUpdate(MAIN, refs["refs/heads/feature"], refs[MAIN]),
                    RefUpdate("refs/heads/new", refs[MAIN], None),
                ],
                who="a",
                message="m",
                source="push",
            )
        with pytest.raises(StorageError):
            repo.set_head("refs/heads/feature")
    assert (repo.refs.items(), repo.refs.reflog(MAIN), repo.head_target) == before
    assert events == []
    assert _table_counts(data) == on_disk

    # A real SQLite failure inside the transaction (a read-only connection) rolls back too.
    registry.directory._db.execute("PRAGMA query_only = ON")
    with pytest.raises(StorageError, match="cannot record the ref update"):
        repo.update_refs([RefUpdate("refs/heads/new", refs[MAIN], None)], who="a", message="m", source="api")
    assert (repo.refs.items(), repo.refs.reflog(MAIN), repo.head_target) == before
    registry.directory._db.execute("PRAGMA query_only = OFF")
    assert _table_counts(data) == on_disk

    # and once the disk is back, the same update goes through
    repo.update_refs([RefUpdate("refs/heads/new", refs[MAIN], None)], who="a", message="m", source="api")
    assert len(events) == 1
    registry.directory.close()
    assert Registry(DataDirectory(data)).get("app").refs.get("refs/heads/new") == refs[MAIN]


def test_a_failed_pack_write_leaves_memory_unchanged(data: Path, git_history: Path) -> None:
    registry = Registry(DataDirectory(data))
    repo = registry.create("app")
    pack_dir = registry.directory.pack_dir("app")
    shutil.rmtree(pack_dir)
    pack_dir.write_text("not a directory")
    pack = repo.objects.index_pack(pack_objects(git_history))
    with pytest.raises(StorageError):
        repo.add_pack(pack)
    assert len(repo.objects) == 0
    assert not repo.objects.has(pack.oids[0])


def test_a_failed_head_change_keeps_the_old_head_on_disk_and_in_memory(
    data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = Registry(DataDirectory(data))
    repo = registry.create("app")
    repo.set_head("refs/heads/trunk")

    def broken(self: DataDirectory) -> object:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(DataDirectory, "transaction", broken)
    with pytest.raises(StorageError):
        repo.set_head("refs/heads/other")
    assert repo.head_target == "refs/heads/trunk"
    monkeypatch.undo()
    registry.directory.close()
    assert Registry(DataDirectory(data)).get("app").head_target == "refs/heads/trunk"


def test_an_implicit_creation_undone_leaves_nothing(data: Path, git_history: Path) -> None:
    registry = Registry(DataDirectory(data))
    repo, created = registry.get_or_create("team/tmp")
    assert created
    assert registry.directory.repo_names() == ["team/tmp"]
    assert (data / "repos" / "team" / "tmp.git").is_dir()
    # a push that stored its pack and then had every ref update refused
    repo.add_pack(repo.objects.index_pack(pack_objects(git_history)))
    registry.discard_if_empty("team/tmp", repo)
    assert registry.get("team/tmp") is None
    assert registry.directory.repo_names() == []
    assert db_rows(data, "SELECT * FROM repos") == []
    assert not (data / "repos" / "team" / "tmp.git").exists()
    registry.directory.close()
    assert Registry(DataDirectory(data)).names() == []


def test_discard_keeps_a_repository_a_push_filled(data: Path, git_history: Path) -> None:
    refs = git_refs(git_history)
    registry = Registry(DataDirectory(data))
    repo, _ = registry.get_or_create("app")
    repo.add_pack(repo.objects.index_pack(pack_objects(git_history)))
    repo.update_refs([RefUpdate(MAIN, refs[MAIN], None)], who="a", message="m", source="push")
    registry.discard_if_empty("app", repo)
    registry.directory.close()
    assert Registry(DataDirectory(data)).get("app").refs.get(MAIN) == refs[MAIN]


def test_a_registry_in_memory_touches_no_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    registry = Registry()
    repo = registry.create("app")
    repo.set_head("refs/heads/trunk")
    assert list(tmp_path.iterdir()) == []
