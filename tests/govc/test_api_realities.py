"""Realities: cheap isolated refs under refs/realities/, ephemeral or durable; creation and work from
threads and asyncio; promotion (set_main) and three-way merge."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import govc
from storage.interfaces import RefUpdate

OPS = "ops <ops@example.com>"


def make_repo(files: dict[str, str] | None = None) -> govc.Repository:
    repo = govc.Repository("r")
    repo.reality("main").apply(files or {"app.conf": "workers = 4\n"}, "initial", author=OPS)
    return repo


def pack_files(data: Path, name: str = "default") -> list[str]:
    return sorted(p.name for p in (data / "repos" / f"{name}.git" / "objects" / "pack").iterdir())


@pytest.fixture
def busy_switching() -> Iterator[None]:
    """Switch threads very often, so that races show up in a few hundred iterations."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


# -- creation ----------------------------------------------------------------------------------


def test_parallel_realities_are_refs_at_mains_tip() -> None:
    repo = make_repo()
    main_tip = repo.reality("main").head
    realities = repo.parallel_realities(["optimize-cpu", "optimize-memory", "optimize-network"])
    assert [r.name for r in realities] == ["optimize-cpu", "optimize-memory", "optimize-network"]
    assert [r.ref for r in realities] == [
        "refs/realities/optimize-cpu", "refs/realities/optimize-memory", "refs/realities/optimize-network",
    ]
    assert all(isinstance(r, govc.Reality) for r in realities)
    assert all(r.head == main_tip for r in realities)
    assert repo.refs.list("refs/realities/") == {r.ref: main_tip for r in realities}
    assert {r.name for r in repo.realities()} == {"optimize-cpu", "optimize-memory", "optimize-network"}
    assert repo.branches() == ["main"]  # realities are not branches
    assert realities[0].read("app.conf") == b"workers = 4\n"


def test_creating_realities_is_one_atomic_update() -> None:
    repo = make_repo()
    events: list[govc.RefEvent] = []
    repo.subscribe(events.append)
    repo.parallel_realities(["a", "b", "c"])
    assert len(events) == 1
    assert {c.name for c in events[0].changes} == {"refs/realities/a", "refs/realities/b", "refs/realities/c"}
    assert all(c.old is None for c in events[0].changes)


def test_parallel_reality_single_and_its_defaults() -> None:
    repo = make_repo()
    canary = repo.parallel_reality("canary")
    assert canary.name == "canary"
    assert canary.ref == "refs/realities/canary"
    assert canary.ephemeral is False
    assert canary.head == repo.reality("main").head
    assert canary.commit == repo.reality("main").commit


def test_creating_an_existing_reality_again_keeps_its_work() -> None:
    repo = make_repo()
    canary = repo.parallel_reality("canary")
    work = canary.apply({"app.conf": "workers = 8\n"})
    again = repo.parallel_reality("canary")
    assert again == canary
    assert again.head == work.oid.encode()
    assert again.read("app.conf") == b"workers = 8\n"
    mixed = repo.parallel_realities(["canary", "fresh"])
    assert mixed[0].head == work.oid.encode()
    assert mixed[1].head == repo.reality("main").head


def test_reality_from_another_base() -> None:
    repo = make_repo()
    canary = repo.parallel_reality("canary")
    canary.apply({"canary.txt": "c\n"})
    child = repo.parallel_reality("canary-child", base="canary")
    assert child.head == canary.head
    assert child.read("canary.txt") == b"c\n"
    with repo.transaction("staging") as tx:
        tx.write("s", "s\n")
        tx.commit("staging")
    from_branch = repo.parallel_reality("from-staging", base="staging")
    assert from_branch.read("s") == b"s\n"


def test_a_thousand_realities() -> None:
    repo = make_repo()
    names = [f"r{i:04d}" for i in range(1000)]
    realities = repo.parallel_realities(names, ephemeral=True)
    assert len(realities) == 1000
    assert len(repo.refs.list("refs/realities/")) == 1000
    assert all(r.head == repo.reality("main").head for r in realities)
    realities[500].apply({"only-500": "x\n"})
    assert repo.reality("r0500").read("only-500") == b"x\n"
    assert not repo.reality("r0499").exists("only-500")
    assert not repo.reality("r0501").exists("only-500")


def test_realities_on_an_empty_repository_start_empty() -> None:
    repo = govc.Repository()
    canary = repo.parallel_reality("canary")
    assert canary.head is None
    with pytest.raises(KeyError):
        canary.read("anything")
    assert list(canary.files()) == []
    first = canary.apply({"a": "1\n"})
    assert first.parents == ()
    assert repo.reality("canary").read("a") == b"1\n"
    assert repo.reality("main").head is None


# -- reading -----------------------------------------------------------------------------------


def test_reality_read_exists_files_and_key_error() -> None:
    repo = make_repo({"nginx.conf": "n\n", "sub/dir/x.tf": "x\n"})
    main = repo.reality("main")
    assert main.read("nginx.conf") == b"n\n"
    assert main.read("/sub/dir/x.tf") == b"x\n"
    assert main.exists("nginx.conf")
    assert not main.exists("absent")
    with pytest.raises(KeyError):
        main.read("absent")
    with pytest.raises(KeyError):
        main.read("sub/dir")
    with pytest.raises(KeyError):
        main.read("nginx.conf/below-a-file")
    assert list(main.files()) == ["nginx.conf", "sub/dir/x.tf"]


def test_reality_of_a_missing_branch_has_nothing() -> None:
    repo = make_repo()
    ghost = repo.reality("no-such-branch")
    assert ghost.head is None
    assert ghost.commit is None
    with pytest.raises(KeyError):
        ghost.read("app.conf")


def test_reality_names_resolve_to_branches_first_then_realities() -> None:
    repo = make_repo()
    repo.parallel_reality("canary")
    assert repo.reality("main").ref == "refs/heads/main"
    assert repo.reality("canary").ref == "refs/realities/canary"
    assert repo.reality("refs/realities/canary").name == "canary"
    with repo.transaction("canary-branch") as tx:
        tx.write("x", "1\n")
        tx.commit("a branch")
    assert repo.reality("canary-branch").ref == "refs/heads/canary-branch"


def test_reality_equality_and_hash() -> None:
    repo = make_repo()
    a = repo.parallel_reality("a")
    assert a == repo.reality("a")
    assert len({a, repo.reality("a"), repo.reality("main")}) == 2
    assert a != make_repo().parallel_reality("a")
    assert "a" in repr(a)


# -- isolation ---------------------------------------------------------------------------------


def test_changes_in_one_reality_never_appear_in_another() -> None:
    repo = make_repo({"app.conf": "workers = 4\n", "shared": "s\n"})
    cpu, mem, net = repo.parallel_realities(["optimize-cpu", "optimize-memory", "optimize-network"])
    main_tip = repo.reality("main").head
    cpu.apply({"app.conf": "workers = 16\n"})
    mem.apply({"cache.conf": "size = 1g\n", "shared": None})
    assert cpu.read("app.conf") == b"workers = 16\n"
    assert mem.read("app.conf") == b"workers = 4\n"
    assert net.read("app.conf") == b"workers = 4\n"
    assert not cpu.exists("cache.conf") and not net.exists("cache.conf")
    assert cpu.exists("shared") and net.exists("shared") and not mem.exists("shared")
    assert net.head == main_tip
    assert repo.reality("main").head == main_tip
    assert repo.reality("main").read("app.conf") == b"workers = 4\n"


def test_apply_makes_one_commit_and_returns_it() -> None:
    repo = make_repo()
    canary = repo.parallel_reality("canary", ephemeral=True)
    base = canary.head
    commit = canary.apply({"app.conf": "workers = 8\n"})
    assert commit.parents == (base.decode(),)
    assert canary.head == commit.oid.encode()
    assert "app.conf" in commit.message
    named = canary.apply({"x": b"bytes\n"}, "explicit message", author=OPS)
    assert named.message == "explicit message\n"
    assert named.author == OPS
    assert named.parents == (commit.oid,)


def test_apply_with_none_removes() -> None:
    repo = make_repo({"a": "1\n", "b": "2\n"})
    canary = repo.parallel_reality("canary")
    canary.apply({"a": None, "c": "3\n"})
    assert sorted(canary.files()) == ["b", "c"]
    with pytest.raises(KeyError):
        canary.apply({"never-existed": None})


def test_reality_transaction() -> None:
    repo = make_repo()
    canary = repo.parallel_reality("canary")
    with canary.transaction(author=OPS) as tx:
        tx.write("t", "1\n")
        commit = tx.commit("via reality")
    assert canary.head == commit.oid.encode()
    assert repo.reality("main").head != canary.head


# -- ephemeral and durable ---------------------------------------------------------------------


def test_ephemeral_flag_is_reported() -> None:
    repo = make_repo()
    eph = repo.parallel_reality("eph", ephemeral=True)
    dur = repo.parallel_reality("dur")
    assert eph.ephemeral and not dur.ephemeral
    assert repo.reality("eph").ephemeral
    assert {r.name: r.ephemeral for r in repo.realities()} == {"eph": True, "dur": False}


def test_ephemeral_realities_vanish_on_reopen_durable_ones_remain(tmp_path: Path) -> None:
    repo = govc.Repository.open(tmp_path)
    repo.reality("main").apply({"app.conf": "workers = 4\n"})
    eph = repo.parallel_reality("canary", ephemeral=True)
    dur = repo.parallel_reality("stable")
    eph.apply({"app.conf": "workers = 8\n"})
    dur_commit = dur.apply({"app.conf": "workers = 6\n"})
    assert repo.reality("canary").read("app.conf") == b"workers = 8\n"
    again = govc.Repository.open(tmp_path)
    assert again.reality("canary").head is None
    assert "refs/realities/canary" not in again.refs.list()
    assert again.reality("stable").head == dur_commit.oid.encode()
    assert again.reality("stable").read("app.conf") == b"workers = 6\n"
    assert [r.name for r in again.realities()] == ["stable"]


def test_ephemeral_work_never_touches_disk(tmp_path: Path) -> None:
    repo = govc.Repository.open(tmp_path)
    repo.reality("main").apply({"app.conf": "workers = 4\n"})
    before = pack_files(tmp_path)
    eph = repo.parallel_reality("canary", ephemeral=True)
    for i in range(3):
        eph.apply({"app.conf": f"workers = {i}\n", f"f{i}": f"{i}\n"})
    assert pack_files(tmp_path) == before
    assert eph.read("f2") == b"2\n"


def test_ephemeral_reality_in_an_empty_durable_repository_stays_ephemeral(tmp_path: Path) -> None:
    """An ephemeral reality asked for before main has a commit must still never reach disk."""
    repo = govc.Repository.open(tmp_path)
    eph = repo.parallel_reality("scratch", ephemeral=True)
    assert eph.ephemeral
    eph.apply({"x": "1\n"})
    assert repo.reality("scratch").ephemeral
    again = govc.Repository.open(tmp_path)
    assert again.refs.list("refs/realities/") == {}


def test_deleting_an_ephemeral_reality(tmp_path: Path) -> None:
    repo = govc.Repository.open(tmp_path)
    repo.reality("main").apply({"a": "1\n"})
    eph = repo.parallel_reality("gone", ephemeral=True)
    repo.update_refs([RefUpdate(eph.ref, None, eph.head)], who="t", message="drop", source="api")
    assert eph.head is None
    assert repo.realities() == []
    assert govc.Repository.open(tmp_path).realities() == []


def test_merging_an_ephemeral_reality_into_durable_main_persists_its_objects(tmp_path: Path) -> None:
    repo = govc.Repository.open(tmp_path)
    repo.reality("main").apply({"app.conf": "workers = 4\n"})
    eph = repo.parallel_reality("canary", ephemeral=True)
    eph.apply({"app.conf": "workers = 8\n", "new.conf": "n\n"})
    outcome = repo.merge(eph, into="main")
    assert outcome.clean
    again = govc.Repository.open(tmp_path)
    assert again.reality("main").read("app.conf") == b"workers = 8\n"
    assert again.reality("main").read("new.conf") == b"n\n"
    assert again.reality("canary").head is None


def test_promoting_an_ephemeral_reality_in_a_durable_repository(tmp_path: Path) -> None:
    repo = govc.Repository.open(tmp_path)
    repo.reality("main").apply({"app.conf": "workers = 4\n"})
    eph = repo.parallel_reality("canary", ephemeral=True)
    eph.apply({"app.conf": "workers = 8\n"})
    repo.set_main(eph)
    again = govc.Repository.open(tmp_path)
    assert again.reality("main").read("app.conf") == b"workers = 8\n"


# -- concurrency -------------------------------------------------------------------------------


def test_eight_threads_create_and_apply_realities() -> None:
    repo = make_repo()
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def worker(n: int) -> None:
        try:
            barrier.wait()
            for i in range(10):
                r = repo.parallel_reality(f"t{n}-{i}", ephemeral=i % 2 == 0)
                r.apply({"who": f"{n}-{i}\n"})
                assert r.read("who") == f"{n}-{i}\n".encode()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(repo.realities()) == 80
    for n in range(8):
        for i in range(10):
            assert repo.reality(f"t{n}-{i}").read("who") == f"{n}-{i}\n".encode()
    assert not repo.reality("main").exists("who")


def test_threads_creating_the_same_realities_all_get_them(busy_switching: None) -> None:
    """parallel_realities is idempotent: threads asking for the same names at once must all
    get the realities, not a StaleRef from losing the race to create them."""
    repo = make_repo()
    errors: list[BaseException] = []
    for round_ in range(100):
        barrier = threading.Barrier(8)

        def worker(r: int = round_, barrier: threading.Barrier = barrier) -> None:
            try:
                barrier.wait()
                got = repo.parallel_realities([f"shared-{r}", f"also-{r}"])
                assert all(x.head is not None for x in got)
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == [], f"{len(errors)} failures, first: {errors[0]!r}"


def test_threads_applying_to_one_reality_serialise_or_conflict() -> None:
    repo = make_repo()
    canary = repo.parallel_reality("canary")
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def worker(n: int) -> None:
        barrier.wait()
        try:
            canary.apply({f"f{n}": f"{n}\n"})
            outcomes.append("ok")
        except govc.ConflictError:
            outcomes.append("conflict")
        except BaseException as e:
            outcomes.append(repr(e))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(outcomes) <= {"ok", "conflict"}, outcomes
    assert len(list(canary.files())) == 1 + outcomes.count("ok")


def test_asyncio_gather_creates_and_applies_realities() -> None:
    repo = make_repo()

    async def experiment(n: int) -> bytes:
        reality = repo.parallel_reality(f"exp-{n}", ephemeral=True)
        await asyncio.sleep(0)
        reality.apply({"app.conf": f"workers = {n}\n"})
        await asyncio.sleep(0)
        return reality.read("app.conf")

    async def main() -> list[bytes]:
        return await asyncio.gather(*(experiment(n) for n in range(50)))

    results = asyncio.run(main())
    assert results == [f"workers = {n}\n".encode() for n in range(50)]
    assert len(repo.realities()) == 50


def test_asyncio_tasks_in_worker_threads() -> None:
    repo = make_repo()

    def experiment(n: int) -> bytes:
        reality = repo.parallel_reality(f"exp-{n}")
        reality.apply({"app.conf": f"workers = {n}\n", f"only-{n}": "x\n"})
        return reality.read("app.conf")

    async def main() -> list[bytes]:
        return await asyncio.gather(*(asyncio.to_thread(experiment, n) for n in range(32)))

    results = asyncio.run(main())
    assert results == [f"workers = {n}\n".encode() for n in range(32)]
    for n in range(32):
        files = set(repo.reality(f"exp-{n}").files())
        assert files == {"app.conf", f"only-{n}"}


# -- promotion ---------------------------------------------------------------------------------


def test_set_main_moves_main_to_the_reality() -> None:
    repo = make_repo()
    canary = repo.parallel_reality("canary", ephemeral=True)
    work = canary.apply({"app.conf": "workers = 8\n"})
    events: list[govc.RefEvent] = []
    repo.subscribe(events.append)
    promoted = repo.set_main(canary)
    assert promoted.oid == work.oid
    assert repo.reality("main").head == canary.head
    assert repo.reality("main").read("app.conf") == b"workers = 8\n"
    assert len(events) == 1
    assert [(c.name, c.new) for c in events[0].changes] == [("refs/heads/main", work.oid.encode())]
    assert canary.head == work.oid.encode()  # the reality itself stays


def test_set_main_by_name_and_to_another_branch() -> None:
    repo = make_repo()
    repo.parallel_reality("canary").apply({"x": "1\n"})
    repo.set_main("canary")
    assert repo.reality("main").read("x") == b"1\n"
    with repo.transaction("prod") as tx:
        tx.write("p", "p\n")
        tx.commit("prod")
    repo.set_main("canary", branch="prod")
    assert repo.reality("prod").head == repo.reality("canary").head


def test_set_main_of_an_empty_reality_raises_key_error() -> None:
    repo = govc.Repository()
    empty = repo.parallel_reality("empty")
    with pytest.raises(KeyError):
        repo.set_main(empty)


def test_set_main_runs_validators() -> None:
    """Validators veto every API ref update: promoting a reality must not smuggle a change onto
    main that a commit to main would have been refused."""
    repo = make_repo()

    @repo.validator(branches="main")
    def no_secrets(change: govc.Change) -> None:
        if any(data and b"password=" in data for data in change.files.values()):
            raise govc.ValidationError("secret")

    canary = repo.parallel_reality("canary")
    canary.apply({"app.conf": "password=hunter2\n"})  # allowed on the reality
    before = repo.reality("main").head
    with pytest.raises(govc.ValidationError):
        repo.set_main(canary)
    assert repo.reality("main").head == before


# -- merge -------------------------------------------------------------------------------------


def test_merge_fast_forwards_when_main_did_not_move() -> None:
    repo = make_repo()
    canary = repo.parallel_reality("canary", ephemeral=True)
    work = canary.apply({"app.conf": "workers = 8\n"})
    count = len(repo.log("main"))
    outcome = repo.merge(canary, into="main")
    assert isinstance(outcome, govc.MergeOutcome)
    assert outcome.clean and outcome.fast_forward and not outcome.up_to_date
    assert outcome.conflicts == ()
    assert outcome.commit.oid == work.oid
    assert repo.reality("main").head == work.oid.encode()
    assert len(repo.log("main")) == count + 1  # no merge commit


def test_merge_of_diverged_histories_makes_a_two_parent_commit() -> None:
    repo = make_repo({"app.conf": "workers = 4\n", "shared.txt": "one\ntwo\nthree\nfour\nfive\n"})
    canary = repo.parallel_reality("canary")
    theirs = canary.apply({"canary.conf": "c\n", "shared.txt": "ONE\ntwo\nthree\nfour\nfive\n"})
    ours = repo.reality("main").apply({"main.conf": "m\n", "shared.txt": "one\ntwo\nthree\nfour\nFIVE\n"})
    events: list[govc.RefEvent] = []
    repo.subscribe(events.append)
    outcome = repo.merge(canary, into="main", author=OPS, message="Merge canary")
    assert outcome.clean and not outcome.fast_forward
    merge = outcome.commit
    assert merge.parents == (ours.oid, theirs.oid)
    assert merge.author == OPS
    assert merge.message == "Merge canary\n"
    main = repo.reality("main")
    assert main.head == merge.oid.encode()
    assert main.read("canary.conf") == b"c\n"
    assert main.read("main.conf") == b"m\n"
    assert main.read("shared.txt") == b"ONE\ntwo\nthree\nfour\nFIVE\n"
    assert canary.head == theirs.oid.encode()  # the merged reality is untouched
    assert len(events) == 1 and events[0].changes[0].name == "refs/heads/main"


def test_merge_conflict_is_reported_and_nothing_is_written() -> None:
    repo = make_repo({"app.conf": "workers = 4\n"})
    canary = repo.parallel_reality("canary")
    canary.apply({"app.conf": "workers = 8\n"})
    repo.reality("main").apply({"app.conf": "workers = 2\n"})
    before, objects = repo.reality("main").head, len(repo.objects)
    events: list[govc.RefEvent] = []
    repo.subscribe(events.append)
    outcome = repo.merge(canary, into="main")
    assert not outcome.clean
    assert outcome.commit is None
    assert [c.path for c in outcome.conflicts] == ["app.conf"]
    conflict = outcome.conflicts[0]
    assert conflict.base == b"workers = 4\n"
    assert conflict.ours == b"workers = 2\n"
    assert conflict.theirs == b"workers = 8\n"
    assert repo.reality("main").head == before
    assert len(repo.objects) == objects
    assert events == []


def test_merge_when_main_already_contains_the_reality() -> None:
    repo = make_repo()
    canary = repo.parallel_reality("canary")
    repo.reality("main").apply({"later": "1\n"})
    before = repo.reality("main").head
    outcome = repo.merge(canary, into="main")
    assert outcome.clean and outcome.up_to_date and not outcome.fast_forward
    assert repo.reality("main").head == before


def test_merge_into_a_branch_that_does_not_exist_creates_it() -> None:
    repo = make_repo()
    canary = repo.parallel_reality("canary")
    canary.apply({"x": "1\n"})
    outcome = repo.merge(canary, into="release")
    assert outcome.clean
    assert repo.reality("release").head == canary.head


def test_merge_by_name_and_between_realities() -> None:
    repo = make_repo()
    a, b = repo.parallel_realities(["a", "b"])
    a.apply({"a": "1\n"})
    b.apply({"b": "1\n"})
    outcome = repo.merge("a", into="b")
    assert outcome.clean
    assert len(outcome.commit.parents) == 2
    assert sorted(repo.reality("b").files()) == ["a", "app.conf", "b"]
    assert not repo.reality("a").exists("b")


def test_merge_is_vetoed_by_validators() -> None:
    repo = make_repo()

    @repo.validator(branches="main")
    def no_secrets(change: govc.Change) -> None:
        if any(data and b"password=" in data for data in change.files.values()):
            raise govc.ValidationError("secret")

    canary = repo.parallel_reality("canary")
    canary.apply({"app.conf": "password=1\n"})
    repo.reality("main").apply({"other": "o\n"})  # diverged: a real merge, not a fast-forward
    before, objects = repo.reality("main").head, len(repo.objects)
    with pytest.raises(govc.ValidationError):
        repo.merge(canary, into="main")
    assert repo.reality("main").head == before
    assert len(repo.objects) == objects


def test_fast_forward_merge_is_vetoed_by_validators() -> None:
    repo = make_repo()

    @repo.validator(branches="main")
    def no_secrets(change: govc.Change) -> None:
        if any(data and b"password=" in data for data in change.files.values()):
            raise govc.ValidationError("secret")

    canary = repo.parallel_reality("canary")
    canary.apply({"app.conf": "password=1\n"})
    before = repo.reality("main").head
    with pytest.raises(govc.ValidationError):
        repo.merge(canary, into="main")
    assert repo.reality("main").head == before


def test_merge_of_an_empty_reality_raises_key_error() -> None:
    repo = govc.Repository()
    with pytest.raises(KeyError):
        repo.merge(repo.parallel_reality("empty"), into="main")


def test_merge_raises_conflict_error_when_the_target_moved_during_the_merge() -> None:
    """Merge moves the target with compare-and-swap; losing that race is the API's typed
    ConflictError (as for transactions), and nothing is written."""
    repo = make_repo()
    canary = repo.parallel_reality("canary")
    canary.apply({"c": "1\n"})
    elsewhere = repo.parallel_reality("elsewhere").apply({"e": "1\n"})
    repo.reality("main").apply({"m": "1\n"})  # diverged: a real merge commit
    moved = {"done": False}

    @repo.validator(branches="main")
    def move_main_meanwhile(change: govc.Change) -> None:
        # Runs after the merge was computed and before the ref moves: a concurrent writer.
        if not moved["done"]:
            moved["done"] = True
            repo.update_refs([RefUpdate("refs/heads/main", elsewhere.oid.encode())], who="other",
                             message="concurrent", source="api")

    with pytest.raises(govc.ConflictError):
        repo.merge(canary, into="main")
    assert repo.reality("main").head == elsewhere.oid.encode()
