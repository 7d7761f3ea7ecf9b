"""One suite, every durable backend: the embedded one (SQLite and pack files) and PostgreSQL.

Each test gets a ``store``: a way to open directory objects on one set of data, so a test can
write through one object and read back through a fresh one (a restart, or another node). The
PostgreSQL cases run against a real server (tests/pgserver.py), with a small chunk size so that
every pack spans several chunks. The tests after the shared ones concern PostgreSQL alone: a
server that goes away and comes back, NOTIFY, the schema marker.
"""

from __future__ import annotations

import itertools
import json
import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from govc.repository import Repository
from storage.disk import SIDECAR_MAGIC, DataDirectory, StaleRefOnDisk, pack_from_objects
from storage.errors import StaleRef, StorageError
from storage.interfaces import ZERO_OID, Backend, ReflogEntry, RefUpdate
from storage.packs import OBJ_BLOB, StoredPack, index_pack, object_id, read_pack_object
from storage.postgres import (
    EVENT_CHANNEL,
    SCHEMA,
    PostgresDirectory,
    PostgresSchemaError,
    PostgresUnavailable,
    StaleRefInDatabase,
)
from tests.helpers import git
from tests.pgserver import PostgresServer

MAIN = "refs/heads/main"
DEV = "refs/heads/dev"
REPO = "app"
A, B, C, D = (bytes([c]) * 40 for c in b"abcd")
#: What a lost compare-and-swap raises, per backend (both are StorageErrors).
STALE = (StaleRefOnDisk, StaleRef)
#: Small, so that the sample packs span several chunks and every boundary is crossed.
TEST_CHUNK = 1024

Directory = DataDirectory | PostgresDirectory


@dataclass
class Store:
    """Directory objects on one set of data; ``open()`` makes another (a restart, or a node)."""

    kind: str
    factory: Callable[[], Directory]
    server: PostgresServer | None = None
    dsn: str = ""
    opened: list[Directory] = field(default_factory=list)

    def open(self) -> Directory:
        directory = self.factory()
        self.opened.append(directory)
        return directory

    def backend(self, name: str = REPO) -> Backend:
        """A backend of a repository (created if needed) on a new directory object."""
        directory = self.open()
        directory.create_repo(name)
        return directory.backend(name)


@pytest.fixture(params=["disk", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "disk":
        path = tmp_path / "data"
        s = Store("disk", lambda: DataDirectory(path))
    else:
        dsn = request.getfixturevalue("pg_dsn")
        server = request.getfixturevalue("postgres")
        s = Store("postgres", lambda: PostgresDirectory(dsn, chunk_size=TEST_CHUNK), server, dsn)
    yield s
    for directory in s.opened:
        directory.close()


@pytest.fixture
def pg(pg_dsn: str, postgres: PostgresServer) -> Iterator[Store]:
    """The PostgreSQL store alone, for the tests that concern only it."""
    s = Store("postgres", lambda: PostgresDirectory(pg_dsn, chunk_size=TEST_CHUNK), postgres, pg_dsn)
    yield s
    for directory in s.opened:
        directory.close()


# --------------------------------------------------------------------------------------------
# helpers


def git_pack(repo: Path, *revs: str) -> bytes:
    """``git pack-objects`` of ``revs`` (everything when none), with offset deltas."""
    args = ["-C", repo, "pack-objects", "--stdout", "-q", "--delta-base-offset"]
    if revs:
        return git(*args, "--revs", input="".join(f"{r}\n" for r in revs).encode()).stdout
    return git(*args, "--all", input=b"").stdout


def git_refs(repo: Path) -> dict[str, bytes]:
    out = git("-C", repo, "for-each-ref", "--format=%(refname) %(objectname)").stdout.decode()
    return {name: oid.encode() for name, oid in (line.split() for line in out.splitlines())}


def entry(old: bytes, new: bytes, when: float = 1_700_000_000.5, message: str = "push") -> ReflogEntry:
    return ReflogEntry(old, new, "alice", when, message)


def move(backend: Backend, name: str, old: bytes, new: bytes | None, *, when: float = 1_700_000_000.5,
         event: bool = True, symrefs: dict[str, str] | None = None) -> int | None:
    """Move one ref the way Repository.update_refs does: CAS on the log's old value, one event."""
    record = json.dumps({"changes": [{"ref": name, "old": old.decode(), "new": (new or ZERO_OID).decode()}]})
    return backend.commit_refs({name: new}, symrefs or {"HEAD": MAIN},
                               [(name, entry(old, new or ZERO_OID, when))], record if event else None)


def blob_pack(*contents: bytes) -> StoredPack:
    return index_pack(pack_from_objects([(OBJ_BLOB, c) for c in contents]))


def same_pack(a: StoredPack, b: StoredPack) -> None:
    assert a.name == b.name
    assert a.data == b.data
    assert a.oids == b.oids
    assert list(a.offsets) == list(b.offsets)
    assert bytes(a.types) == bytes(b.types)
    assert list(a.sizes) == list(b.sizes)


def state(store: Store, name: str = REPO) -> tuple[Any, ...]:
    """Everything a fresh directory object sees of a repository, and the event log's end."""
    directory = store.open()
    snap = directory.backend(name).load()
    packs = sorted(p.name for p in snap.packs)
    return snap.refs, snap.symrefs, snap.reflogs, packs, directory.last_event_id()


# --------------------------------------------------------------------------------------------
# repositories


def test_repositories_are_created_listed_and_deleted(store: Store) -> None:
    d = store.open()
    assert d.repo_names() == []
    d.create_repo("b")
    d.create_repo("a/nested")
    d.create_repo("b")  # again: harmless
    assert store.open().repo_names() == ["a/nested", "b"]
    backend = d.backend("b")
    assert isinstance(backend, Backend)
    backend.store_pack(blob_pack(b"x"))
    move(backend, MAIN, ZERO_OID, A)
    d.delete_repo("b")
    assert store.open().repo_names() == ["a/nested"]
    d.create_repo("b")
    snap = store.open().backend("b").load()
    assert (snap.refs, snap.reflogs, snap.packs) == ({}, {}, [])


# --------------------------------------------------------------------------------------------
# objects


def test_a_pack_round_trips_byte_for_byte(store: Store, git_history_template: Path) -> None:
    pack = index_pack(git_pack(git_history_template))
    assert len(pack.data) > 3 * TEST_CHUNK  # spans several chunks in PostgreSQL
    store.backend().store_pack(pack)
    (loaded,) = store.backend().load().packs
    same_pack(loaded, pack)
    for pos, oid in enumerate(pack.oids):
        type_num, content = read_pack_object(loaded, pos)
        assert (type_num, content) == read_pack_object(pack, pos)
        assert object_id(type_num, content) == oid


def test_a_packs_closure_is_kept(store: Store, git_history_template: Path) -> None:
    """The ids a pushed pack is exactly the closure of (what lets a full clone reuse it whole)."""
    pack = index_pack(git_pack(git_history_template))
    pack.closure = frozenset(git_refs(git_history_template).values())
    plain = blob_pack(b"no closure known")
    backend = store.backend()
    backend.store_pack(pack)
    backend.store_pack(plain)
    loaded = {p.name: p.closure for p in store.backend().load().packs}
    assert loaded == {pack.name: pack.closure, plain.name: None}


def test_store_objects_packs_them_up(store: Store) -> None:
    objects = [(OBJ_BLOB, b"one\n"), (OBJ_BLOB, b"two\n" * 5000)]
    backend = store.backend()
    backend.store_objects(objects)
    backend.store_objects([])  # nothing: no empty pack either
    (loaded,) = store.backend().load().packs
    got = {loaded.oids[i]: read_pack_object(loaded, i) for i in range(len(loaded))}
    assert got == {object_id(t, c): (t, c) for t, c in objects}


def test_storing_the_same_pack_twice_keeps_one(store: Store) -> None:
    pack = blob_pack(b"same")
    store.backend().store_pack(pack)
    store.backend().store_pack(pack)
    assert [p.name for p in store.backend().load().packs] == [pack.name]


def test_packs_load_in_the_order_they_were_stored(store: Store) -> None:
    backend = store.backend()
    packs = [blob_pack(b"first"), blob_pack(b"second"), blob_pack(b"third")]
    for pack in packs:
        backend.store_pack(pack)
    assert [p.name for p in store.backend().load().packs] == [p.name for p in packs]


def test_removed_packs_stay_removed(store: Store) -> None:
    backend = store.backend()
    keep, drop = blob_pack(b"keep"), blob_pack(b"drop")
    backend.store_pack(keep)
    backend.store_pack(drop)
    backend.remove_packs([drop])
    backend.remove_packs([])
    assert [p.name for p in store.backend().load().packs] == [keep.name]


def test_a_pack_stored_but_never_referenced_does_not_break_loading(store: Store) -> None:
    """What a crash between the pack write and the ref transaction leaves behind."""
    backend = store.backend()
    used = blob_pack(b"used")
    backend.store_pack(used)
    move(backend, MAIN, ZERO_OID, used.oids[0])
    orphan = blob_pack(b"pushed, but the ref update never committed")
    backend.store_pack(orphan)
    snap = store.backend().load()
    assert snap.refs == {MAIN: used.oids[0]}
    assert sorted(p.name for p in snap.packs) == sorted([used.name, orphan.name])


# --------------------------------------------------------------------------------------------
# refs


def test_compare_and_swap_moves_refs_and_logs_them(store: Store) -> None:
    backend = store.backend()
    first = move(backend, MAIN, ZERO_OID, A, when=1.0)
    second = move(backend, MAIN, A, B, when=2.0)
    assert isinstance(first, int) and isinstance(second, int) and second > first
    snap = store.backend().load()
    assert snap.refs == {MAIN: B}
    assert snap.symrefs == {"HEAD": MAIN}
    assert snap.reflogs == {MAIN: [entry(ZERO_OID, A, 1.0), entry(A, B, 2.0)]}


def test_a_stale_compare_and_swap_changes_nothing(store: Store) -> None:
    backend = store.backend()
    move(backend, MAIN, ZERO_OID, A)
    before = state(store)
    with pytest.raises(STALE) as caught:
        move(backend, MAIN, B, C)  # the log says main was at B; it is at A
    assert MAIN in str(caught.value)
    with pytest.raises(STALE):
        move(backend, MAIN, ZERO_OID, C)  # a creation, but main exists
    assert state(store) == before


def test_creating_a_ref_fails_if_another_writer_created_it(store: Store) -> None:
    one, two = store.backend(), store.backend()
    move(one, MAIN, ZERO_OID, A)
    with pytest.raises(STALE):
        move(two, MAIN, ZERO_OID, B)
    assert store.backend().load().refs == {MAIN: A}


def test_several_refs_move_together_or_not_at_all(store: Store) -> None:
    backend = store.backend()
    backend.commit_refs({MAIN: A, DEV: B}, {"HEAD": MAIN},
                        [(MAIN, entry(ZERO_OID, A)), (DEV, entry(ZERO_OID, B))], "{}")
    before = state(store)
    with pytest.raises(STALE) as caught:  # main is right, dev is stale: neither moves
        backend.commit_refs({MAIN: C, DEV: D, "refs/heads/new": C}, {"HEAD": DEV},
                            [(MAIN, entry(A, C)), (DEV, entry(A, D)), ("refs/heads/new", entry(ZERO_OID, C))],
                            "{}")
    assert DEV in str(caught.value)
    assert state(store) == before
    backend.commit_refs({MAIN: C, DEV: D}, {"HEAD": MAIN}, [(MAIN, entry(A, C)), (DEV, entry(B, D))], "{}")
    assert store.backend().load().refs == {MAIN: C, DEV: D}


def test_deleting_a_ref_checks_its_value(store: Store) -> None:
    backend = store.backend()
    move(backend, DEV, ZERO_OID, A)
    with pytest.raises(STALE):
        move(backend, DEV, B, None)
    assert store.backend().load().refs == {DEV: A}
    move(backend, DEV, A, None)
    snap = store.backend().load()
    assert snap.refs == {}
    assert snap.reflogs[DEV][-1] == entry(A, ZERO_OID)  # the log outlives the ref


def test_a_ref_without_a_log_entry_is_written_unchecked(store: Store) -> None:
    backend = store.backend()
    move(backend, MAIN, ZERO_OID, A)
    backend.commit_refs({MAIN: B, DEV: C}, {"HEAD": MAIN}, [])
    assert store.backend().load().refs == {MAIN: B, DEV: C}
    backend.commit_refs({DEV: None}, {"HEAD": MAIN}, [])
    assert store.backend().load().refs == {MAIN: B}


def test_symbolic_refs_are_replaced_as_a_set(store: Store) -> None:
    backend = store.backend()
    both = {"HEAD": DEV, "refs/remotes/origin/HEAD": "refs/remotes/origin/main"}
    backend.commit_refs({}, both, [])
    assert store.backend().load().symrefs == both
    move(backend, MAIN, ZERO_OID, A, symrefs={"HEAD": MAIN})
    assert store.backend().load().symrefs == {"HEAD": MAIN}


def test_reflogs_keep_their_order(store: Store) -> None:
    backend = store.backend()
    values = [ZERO_OID, A, B, C, D, A]
    for i, (old, new) in enumerate(itertools.pairwise(values)):
        move(backend, MAIN, old, new, when=100.0 - i)  # clocks may go backwards: order is commit order
    log = store.backend().load().reflogs[MAIN]
    assert [(e.old, e.new) for e in log] == list(itertools.pairwise(values))


def test_racing_writers_on_two_nodes_exactly_one_wins(store: Store) -> None:
    """Eight threads on two directory objects (two nodes) all try to move main from A."""
    nodes = [store.backend(), store.backend()]
    move(nodes[0], MAIN, ZERO_OID, A)
    first_event = store.open().last_event_id()
    targets = [bytes([c]) * 40 for c in b"01234567"]
    barrier = threading.Barrier(len(targets))
    outcome: dict[bytes, str] = {}

    def attempt(i: int, target: bytes) -> None:
        barrier.wait()
        try:
            move(nodes[i % 2], MAIN, A, target)
            outcome[target] = "won"
        except STALE:
            outcome[target] = "lost"
        except Exception as e:
            outcome[target] = f"error: {e!r}"

    threads = [threading.Thread(target=attempt, args=(i, t)) for i, t in enumerate(targets)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    winners = [t for t, result in outcome.items() if result == "won"]
    assert len(winners) == 1, outcome
    assert sorted(outcome.values()) == ["lost"] * 7 + ["won"], outcome
    snap = store.backend().load()
    assert snap.refs == {MAIN: winners[0]}
    assert [(e.old, e.new) for e in snap.reflogs[MAIN]] == [(ZERO_OID, A), (A, winners[0])]
    assert len(store.open().events_since(first_event)) == 1


def test_opposite_orders_do_not_deadlock(store: Store) -> None:
    """Writers moving the same two refs, named in either order, all get through by retrying."""
    backend_a, backend_b = store.backend(), store.backend()
    backend_a.commit_refs({MAIN: A, DEV: A}, {"HEAD": MAIN},
                          [(MAIN, entry(ZERO_OID, A)), (DEV, entry(ZERO_OID, A))], "{}")
    rounds, errors = 6, []

    def writer(backend: Backend, order: tuple[str, str], seed: int) -> None:
        for r in range(rounds):
            new = f"{seed}{r}".ljust(40, "f").encode()
            while True:
                refs = backend.load().refs
                try:
                    backend.commit_refs({n: new for n in order}, {"HEAD": MAIN},
                                        [(n, entry(refs[n], new)) for n in order], "{}")
                    break
                except STALE:
                    continue
                except Exception as e:
                    errors.append(e)
                    return

    threads = [threading.Thread(target=writer, args=(b, o, s)) for b, o, s in
               [(backend_a, (MAIN, DEV), 1), (backend_b, (DEV, MAIN), 2),
                (backend_a, (DEV, MAIN), 3), (backend_b, (MAIN, DEV), 4)]]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    snap = store.backend().load()
    assert snap.refs[MAIN] == snap.refs[DEV]
    assert len(snap.reflogs[MAIN]) == 1 + 4 * rounds


# --------------------------------------------------------------------------------------------
# the event log


def test_events_get_increasing_ids_and_replay_from_any_point(store: Store) -> None:
    d = store.open()
    assert d.last_event_id() == 0
    d.create_repo("other")
    app, other = store.backend(), d.backend("other")
    ids = [move(app, MAIN, ZERO_OID, A), move(other, MAIN, ZERO_OID, A), move(app, MAIN, A, B)]
    assert move(app, MAIN, B, C, event=False) is None  # no event: none logged
    assert all(isinstance(i, int) for i in ids) and ids == sorted(set(ids))  # type: ignore[type-var]
    fresh = store.open()
    assert fresh.last_event_id() == ids[-1]
    everything = fresh.events_since(0)
    assert [e[0] for e in everything] == ids
    assert [e[1] for e in everything] == [REPO, "other", REPO]
    assert json.loads(everything[2][3])["changes"][0]["new"] == B.decode()
    assert all(isinstance(e[2], float) for e in everything)
    assert [e[0] for e in fresh.events_since(ids[0])] == ids[1:]
    assert [e[0] for e in fresh.events_since(0, REPO)] == [ids[0], ids[2]]
    assert [e[0] for e in fresh.events_since(0, limit=2)] == ids[:2]
    assert fresh.events_since(ids[-1]) == []


def test_a_reader_following_the_log_misses_nothing_while_writers_race(store: Store) -> None:
    """Ids must appear in commit order: a reader that has seen id n never later finds a
    smaller one, however the writers' transactions interleave."""
    names = [f"repo{i}" for i in range(4)]
    d = store.open()
    for name in names:
        d.create_repo(name)
    writes, done = 8, threading.Event()
    seen: list[int] = []

    def write(name: str) -> None:
        backend = store.open().backend(name)
        old = ZERO_OID
        for i in range(writes):
            new = f"{i}".rjust(40, "a").encode()
            move(backend, MAIN, old, new)
            old = new

    def follow() -> None:
        reader = store.open()
        cursor = 0
        while True:
            finished = done.is_set()
            batch = reader.events_since(cursor)
            seen.extend(e[0] for e in batch)
            cursor = batch[-1][0] if batch else cursor
            if finished and not batch:
                return

    follower = threading.Thread(target=follow)
    follower.start()
    writers = [threading.Thread(target=write, args=(n,)) for n in names]
    for t in writers:
        t.start()
    for t in writers:
        t.join(120)
    done.set()
    follower.join(60)
    logged = [e[0] for e in store.open().events_since(0, limit=10_000)]
    assert len(logged) == len(names) * writes
    assert seen == logged


# --------------------------------------------------------------------------------------------
# through the repository layer


def test_a_push_through_the_repository_restores_identically(store: Store, git_history_template: Path) -> None:
    repo = Repository.restore(REPO, store.backend())
    pack = index_pack(git_pack(git_history_template))
    refs = git_refs(git_history_template)
    repo.add_pack(pack)
    event = repo.update_refs([RefUpdate(n, v, None) for n, v in refs.items()], who="alice",
                             message="push", source="push")
    assert event.id is not None
    repo.set_head("refs/heads/feature")

    again = Repository.restore(REPO, store.backend())
    assert again.refs.list() == refs
    assert again.head_target == "refs/heads/feature"
    assert again.refs.reflog(MAIN) == repo.refs.reflog(MAIN)
    assert len(again.objects) == len(repo.objects) == len(pack)
    for oid in pack.oids:
        assert again.objects.get(oid) == repo.objects.get(oid)
    (logged,) = store.open().events_since(0)
    assert logged[0] == event.id
    assert {c["ref"] for c in json.loads(logged[3])["changes"]} == set(refs)

    # The restored copy moves on (an API commit: objects made in memory, stored as a pack)...
    with again.transaction("main", author="bob <bob@example.com>") as tx:
        tx.write("NEW.txt", b"written on the second node\n")
        commit = tx.commit("second node")
    assert again.refs.get(MAIN) == commit.oid.encode()
    # ...so the first one, whose memory is now behind, loses its compare-and-swap and keeps
    # its refs as they were.
    with pytest.raises(StorageError):
        repo.update_refs([RefUpdate(MAIN, refs["refs/tags/light"], refs[MAIN])], who="alice",
                         message="push", source="push")
    assert repo.refs.get(MAIN) == refs[MAIN]
    third = Repository.restore(REPO, store.backend())
    assert third.refs.get(MAIN) == commit.oid.encode()
    assert third.trees.read(commit.tree.encode(), "NEW.txt") == b"written on the second node\n"


# --------------------------------------------------------------------------------------------
# PostgreSQL only


def test_packs_are_stored_in_chunks(pg: Store, git_history_template: Path) -> None:
    pack = index_pack(git_pack(git_history_template))
    pg.backend().store_pack(pack)
    with psycopg.connect(pg.dsn) as conn:
        size, chunks = conn.execute(f"SELECT size, chunks FROM {SCHEMA}.packs").fetchone()  # type: ignore[misc]
        lengths = [r[0] for r in conn.execute(
            f"SELECT length(data) FROM {SCHEMA}.pack_chunks WHERE pack = %s ORDER BY seq", (pack.name,))]
    assert size == len(pack.data) == sum(lengths)
    assert chunks == len(lengths) == -(-len(pack.data) // TEST_CHUNK) > 1
    assert set(lengths[:-1]) == {TEST_CHUNK}


def test_a_pack_being_written_is_invisible_until_whole(pg: Store) -> None:
    """Another node loading while a pack's chunks go in sees no pack or all of it, never part
    (a part would fail to load: its size is checked against the chunks read)."""
    big = blob_pack(random.Random(7).randbytes(400 * TEST_CHUNK))
    writer, reader = pg.backend(), pg.backend()
    seen: list[int] = []
    errors: list[BaseException] = []
    watching, done = threading.Event(), threading.Event()

    def watch() -> None:
        try:
            while not done.is_set():
                seen.append(len(reader.load().packs))
                watching.set()
        except BaseException as e:
            errors.append(e)
            watching.set()

    watcher = threading.Thread(target=watch)
    watcher.start()
    watching.wait(30)
    try:
        writer.store_pack(big)
    finally:
        done.set()
        watcher.join(60)
    assert errors == []
    assert set(seen) <= {0, 1} and len(seen) > 2
    (loaded,) = reader.load().packs
    same_pack(loaded, big)


def test_a_damaged_sidecar_is_rebuilt_from_the_pack(pg: Store, git_history_template: Path) -> None:
    pack = index_pack(git_pack(git_history_template))
    pg.backend().store_pack(pack)
    with psycopg.connect(pg.dsn) as conn:
        conn.execute(f"UPDATE {SCHEMA}.packs SET sidecar = %b", (b"GOVCIDX1 damaged",))
    (loaded,) = pg.backend().load().packs
    same_pack(loaded, pack)
    with psycopg.connect(pg.dsn) as conn:
        row = conn.execute(f"SELECT sidecar FROM {SCHEMA}.packs").fetchone()
    assert row is not None and bytes(row[0]).startswith(SIDECAR_MAGIC) and len(row[0]) > 100


def test_notify_wakes_listeners_at_commit_only(pg: Store) -> None:
    backend = pg.backend()
    with psycopg.connect(pg.dsn, autocommit=True) as listener:
        listener.execute(f"LISTEN {EVENT_CHANNEL}")
        event_id = move(backend, MAIN, ZERO_OID, A)
        got = [n for n in listener.notifies(timeout=5, stop_after=1)]
        assert [(n.channel, n.payload) for n in got] == [(EVENT_CHANNEL, str(event_id))]
        with pytest.raises(StaleRefInDatabase):
            move(backend, MAIN, B, C)  # rolled back: no notification
        assert list(listener.notifies(timeout=0.5)) == []


def test_the_schema_is_created_once_and_its_version_checked(pg: Store) -> None:
    first, second = pg.open(), pg.open()  # the second finds the schema made by the first
    first.create_repo(REPO)
    assert second.repo_names() == [REPO]
    with psycopg.connect(pg.dsn) as conn:
        conn.execute(f"UPDATE {SCHEMA}.meta SET value = '99' WHERE key = 'version'")
    with pytest.raises(PostgresSchemaError, match="version '99'"):
        PostgresDirectory(pg.dsn)


def test_concurrent_start_up_creates_the_schema_once(pg: Store) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def start() -> None:
        barrier.wait()
        try:
            PostgresDirectory(pg.dsn).close()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []


def test_an_unreachable_server_is_a_clear_storage_error(pg_dsn: str, postgres: PostgresServer) -> None:
    dead = pg_dsn.replace(f"port={postgres.port}", "port=1")
    assert dead != pg_dsn
    with pytest.raises(PostgresUnavailable, match=r"^PostgreSQL unreachable: "):
        PostgresDirectory(dead)


def test_a_stopped_server_fails_clearly_and_a_restarted_one_is_used_again(pg: Store) -> None:
    assert pg.server is not None
    directory = pg.open()
    directory.create_repo(REPO)
    backend = directory.backend(REPO)
    move(backend, MAIN, ZERO_OID, A)
    pg.server.stop()
    try:
        for call in (backend.load, lambda: move(backend, MAIN, A, B), directory.repo_names,
                     lambda: backend.store_pack(blob_pack(b"while down"))):
            with pytest.raises(PostgresUnavailable, match=r"^PostgreSQL unreachable: "):
                call()
    finally:
        pg.server.start()
    # The same objects, not recreated: their dead pooled connections are replaced on the way.
    assert backend.load().refs == {MAIN: A}
    assert move(backend, MAIN, A, B) is not None
    assert directory.repo_names() == [REPO]
    assert pg.backend().load().refs == {MAIN: B}


@pytest.mark.parametrize("how", ["restart", "crash"])
def test_a_server_that_went_away_between_calls_is_reconnected_silently(pg: Store, how: str) -> None:
    """Pooled connections died while idle; the next call replaces them instead of failing."""
    assert pg.server is not None
    directory = pg.open()
    directory.create_repo(REPO)
    backend = directory.backend(REPO)
    backends = [backend, directory.backend(REPO)]
    first = move(backend, MAIN, ZERO_OID, A)
    assert first is not None
    barrier = threading.Barrier(3)

    def busy() -> None:  # several connections in the pool, not just one
        barrier.wait()
        backends[0].load()

    threads = [threading.Thread(target=busy) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    if how == "crash":
        pg.server.kill()
    else:
        pg.server.stop()
    pg.server.start()
    second = move(backend, MAIN, A, B)
    assert second is not None
    assert backends[1].load().refs == {MAIN: B}
    # After a crash the id sequence resumes past what it had logged ahead: ids grow, with gaps.
    assert [e[0] for e in directory.events_since(0)] == [first, second] and second > first


def test_an_acknowledged_update_survives_a_crash(pg: Store) -> None:
    assert pg.server is not None
    backend = pg.backend()
    pack = blob_pack(b"durable")
    backend.store_pack(pack)
    event_id = move(backend, MAIN, ZERO_OID, pack.oids[0])
    pg.server.kill()
    try:
        with pytest.raises(PostgresUnavailable):
            backend.load()
    finally:
        pg.server.start()
    snap = backend.load()
    assert snap.refs == {MAIN: pack.oids[0]}
    assert [p.name for p in snap.packs] == [pack.name]
    assert pg.open().last_event_id() == event_id
