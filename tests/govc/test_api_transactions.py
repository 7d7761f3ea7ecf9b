"""The Python API's transactions: staging, isolation, compare-and-swap, rebase, several refs at once,
rollback, validation, and the git objects they write (checked by stock git)."""

from __future__ import annotations

import os
import shutil
import stat
import threading
from pathlib import Path

import pytest

import govc
from govc.portability import export_repository
from govc.transaction import Transaction
from govc.trees import MODE_EXEC
from tests.helpers import git

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git binary")

OPS = "ops <ops@example.com>"


def make_repo(files: dict[str, str | bytes] | None = None) -> govc.Repository:
    """A memory repository whose main holds ``files`` (one commit)."""
    repo = govc.Repository("t")
    with repo.transaction("main", author=OPS) as tx:
        for path, data in (files or {"README.md": "hello\n"}).items():
            tx.write(path, data)
        tx.commit("initial")
    return repo


def tip(repo: govc.Repository, branch: str = "main") -> bytes | None:
    return repo.reality(branch).head


def record_events(repo: govc.Repository) -> list[govc.RefEvent]:
    events: list[govc.RefEvent] = []
    repo.subscribe(events.append)
    return events


# -- basics ------------------------------------------------------------------------------------


def test_first_commit_on_an_empty_repository() -> None:
    repo = govc.Repository()
    assert repo.is_empty()
    with repo.transaction("main", author=OPS) as tx:
        tx.write("nginx.conf", "server {}\n")
        commit = tx.commit("Update nginx with new SSL cert")
    assert isinstance(commit, govc.Commit)
    assert commit.parents == ()
    assert commit.author == OPS
    assert commit.committer == OPS
    assert commit.message == "Update nginx with new SSL cert\n"
    assert tip(repo) == commit.oid.encode()
    assert repo.reality("main").read("nginx.conf") == b"server {}\n"
    assert repo.branches() == ["main"]


def test_str_is_written_as_utf8_and_bytes_verbatim() -> None:
    repo = govc.Repository()
    binary = bytes(range(256)) * 3
    with repo.transaction("main") as tx:
        tx.write("text.txt", "héllo → wörld\n")
        tx.write("blob.bin", binary)
        tx.write("empty", b"")
        tx.commit("mixed")
    main = repo.reality("main")
    assert main.read("text.txt") == "héllo → wörld\n".encode()
    assert main.read("blob.bin") == binary
    assert main.read("empty") == b""


def test_second_commit_has_the_first_as_parent_and_keeps_other_files() -> None:
    repo = make_repo({"a.txt": "a\n", "b.txt": "b\n"})
    first = tip(repo)
    with repo.transaction("main", author=OPS) as tx:
        tx.write("a.txt", "A\n")
        commit = tx.commit("change a")
    assert commit.parents == (first.decode(),)
    main = repo.reality("main")
    assert main.read("a.txt") == b"A\n"
    assert main.read("b.txt") == b"b\n"
    assert [c.message for c in repo.log("main")] == ["change a\n", "initial\n"]


def test_commit_author_can_be_overridden_at_commit_time() -> None:
    repo = make_repo()
    with repo.transaction("main", author=OPS) as tx:
        tx.write("x", "1\n")
        commit = tx.commit("by someone else", author="Jane Doe <jane@example.com>")
    assert commit.author == "Jane Doe <jane@example.com>"


def test_default_author_is_filled_in() -> None:
    repo = govc.Repository()
    with repo.transaction("main") as tx:
        tx.write("x", "1\n")
        commit = tx.commit("anonymous")
    assert "<" in commit.author and commit.author.endswith(">")


def test_read_sees_staged_content_then_the_base() -> None:
    repo = make_repo({"a.txt": "old\n", "keep.txt": "keep\n"})
    with repo.transaction("main") as tx:
        assert tx.read("a.txt") == b"old\n"
        tx.write("a.txt", "new\n")
        assert tx.read("a.txt") == b"new\n"
        assert tx.read("keep.txt") == b"keep\n"
        tx.write("added.txt", b"added\n")
        assert tx.read("added.txt") == b"added\n"
        with pytest.raises(KeyError):
            tx.read("absent.txt")
        assert tx.exists("added.txt")
        assert not tx.exists("absent.txt")


def test_read_on_an_empty_branch_raises_key_error() -> None:
    repo = govc.Repository()
    with repo.transaction("main") as tx, pytest.raises(KeyError):
        tx.read("anything")


def test_remove_a_file() -> None:
    repo = make_repo({"a.txt": "a\n", "b.txt": "b\n"})
    with repo.transaction("main") as tx:
        tx.remove("a.txt")
        with pytest.raises(KeyError):
            tx.read("a.txt")
        assert not tx.exists("a.txt")
        tx.commit("remove a")
    main = repo.reality("main")
    with pytest.raises(KeyError):
        main.read("a.txt")
    assert main.read("b.txt") == b"b\n"
    assert list(main.files()) == ["b.txt"]


def test_remove_of_a_missing_file_raises_key_error() -> None:
    repo = make_repo()
    with repo.transaction("main") as tx, pytest.raises(KeyError):
        tx.remove("no-such-file")


def test_nested_paths_and_empty_directories_disappear() -> None:
    repo = govc.Repository()
    with repo.transaction("main") as tx:
        tx.write("env/prod/main.tf", "prod\n")
        tx.write("env/dev/main.tf", "dev\n")
        tx.write("top.txt", "top\n")
        tx.commit("tree")
    main = repo.reality("main")
    assert sorted(main.files()) == ["env/dev/main.tf", "env/prod/main.tf", "top.txt"]
    assert main.read("env/prod/main.tf") == b"prod\n"
    with pytest.raises(KeyError):
        main.read("env/prod")  # a directory is not a file
    with repo.transaction("main") as tx:
        tx.remove("env/prod/main.tf")
        tx.commit("drop prod")
    assert sorted(main.files()) == ["env/dev/main.tf", "top.txt"]
    tree = repo.graph.commit(main.head).tree
    env = repo.trees.lookup(tree, "env")
    assert env is not None
    assert set(repo.trees.entries(env.oid)) == {b"dev"}  # no empty "prod" left behind


def test_write_then_remove_in_one_transaction_leaves_nothing() -> None:
    repo = make_repo({"keep": "k\n"})
    with repo.transaction("main") as tx:
        tx.write("tmp", "t\n")
        tx.remove("tmp")
        tx.commit("noop-ish")
    assert list(repo.reality("main").files()) == ["keep"]


def test_committing_nothing_is_refused_and_changes_nothing() -> None:
    repo = make_repo()
    before = tip(repo)
    with repo.transaction("main") as tx, pytest.raises(ValueError):
        tx.commit("nothing staged")
    assert tip(repo) == before


def test_a_finished_transaction_refuses_more_writes() -> None:
    repo = make_repo()
    with repo.transaction("main") as tx:
        tx.write("a", "1\n")
        tx.commit("one")
        with pytest.raises(RuntimeError):
            tx.write("b", "2\n")


def test_changes_lists_staged_content_per_ref() -> None:
    repo = make_repo({"a": "1\n"})
    with repo.transaction("main") as tx:
        tx.write("b", "2\n")
        tx.remove("a")
        assert tx.changes == {"refs/heads/main": {"b": b"2\n", "a": None}}


def test_transaction_is_exported_and_is_a_context_manager() -> None:
    repo = make_repo()
    tx = repo.transaction("main")
    assert isinstance(tx, govc.Transaction) and isinstance(tx, Transaction)
    with tx as same:
        assert same is tx


# -- isolation ---------------------------------------------------------------------------------


def test_open_transaction_is_invisible_to_readers_watchers_and_the_store() -> None:
    repo = make_repo({"nginx.conf": "old\n"})
    before_tip = tip(repo)
    before_objects = len(repo.objects)
    events = record_events(repo)
    seen: list[govc.Event] = []
    watcher = repo.watch(seen.append)
    try:
        with repo.transaction("main", author=OPS) as tx:
            tx.write("nginx.conf", "new\n")
            tx.write("extra.conf", "extra\n")
            tx.validate()
            # The same thread, reading through the public API.
            assert repo.reality("main").read("nginx.conf") == b"old\n"
            assert not repo.reality("main").exists("extra.conf")
            assert tip(repo) == before_tip
            assert len(repo.objects) == before_objects
            # Another thread, reading the refs and the tree.
            found: dict[str, object] = {}

            def reader() -> None:
                found["content"] = repo.reality("main").read("nginx.conf")
                found["refs"] = dict(repo.refs.list())
                found["files"] = list(repo.reality("main").files())

            t = threading.Thread(target=reader)
            t.start()
            t.join()
            assert found["content"] == b"old\n"
            assert found["refs"] == {"refs/heads/main": before_tip}
            assert found["files"] == ["nginx.conf"]
            watcher.drain()
            assert events == [] and seen == []
            commit = tx.commit("switch")
        assert repo.reality("main").read("nginx.conf") == b"new\n"
        assert tip(repo) == commit.oid.encode()
        watcher.drain()
        assert len(events) == 1 and len(seen) == 1
    finally:
        watcher.close()


def test_two_open_transactions_do_not_see_each_other() -> None:
    repo = make_repo({"a": "base\n"})
    with repo.transaction("main") as one, repo.transaction("main") as two:
        one.write("a", "one\n")
        two.write("b", "two\n")
        assert two.read("a") == b"base\n"
        assert not one.exists("b")
        one.rollback()
        two.rollback()


# -- compare-and-swap and rebase ---------------------------------------------------------------


def test_commit_fails_with_conflict_error_when_the_branch_moved() -> None:
    repo = make_repo({"a": "1\n"})
    with repo.transaction("main") as tx:
        tx.write("b", "from tx\n")
        repo.reality("main").apply({"c": "moved\n"}, "someone else")
        moved = tip(repo)
        events = record_events(repo)
        with pytest.raises(govc.ConflictError):
            tx.commit("stale")
    assert tip(repo) == moved
    assert not repo.reality("main").exists("b")
    assert events == []


def test_conflict_error_writes_no_objects() -> None:
    """The issue: "commit fails cleanly (ConflictError, nothing written)". The transaction's blob, tree and
    commit must not land in the store when the compare-and-swap fails."""
    repo = make_repo({"a": "1\n"})
    with repo.transaction("main") as tx:
        tx.write("b", "only in the failed transaction\n")
        repo.reality("main").apply({"c": "moved\n"})
        count = len(repo.objects)
        with pytest.raises(govc.ConflictError):
            tx.commit("stale")
    assert len(repo.objects) == count


def test_conflict_error_leaves_no_pack_on_disk(tmp_path: Path) -> None:
    repo = govc.Repository.open(tmp_path / "data")
    repo.reality("main").apply({"a": "1\n"})
    packs = tmp_path / "data" / "repos" / "default.git" / "objects" / "pack"
    with repo.transaction("main") as tx:
        tx.write("b", "only in the failed transaction\n")
        repo.reality("main").apply({"c": "moved\n"})
        on_disk = sorted(p.name for p in packs.iterdir())
        with pytest.raises(govc.ConflictError):
            tx.commit("stale")
    assert sorted(p.name for p in packs.iterdir()) == on_disk


def test_conflict_error_when_the_branch_was_created_meanwhile() -> None:
    repo = govc.Repository()
    with repo.transaction("main") as tx:
        tx.write("mine", "1\n")
        repo.reality("main").apply({"theirs": "2\n"})
        with pytest.raises(govc.ConflictError):
            tx.commit("too late")
    assert not repo.reality("main").exists("mine")


def test_conflict_error_when_the_branch_was_deleted_meanwhile() -> None:
    from storage.interfaces import RefUpdate

    repo = make_repo({"a": "1\n"})
    with repo.transaction("main") as tx:
        tx.write("b", "2\n")
        repo.update_refs([RefUpdate("refs/heads/main", None)], who="x", message="delete", source="api")
        with pytest.raises(govc.ConflictError):
            tx.commit("gone")
    assert tip(repo) is None


def test_rebase_succeeds_when_paths_are_disjoint() -> None:
    repo = make_repo({"a": "1\n"})
    with repo.transaction("main", rebase=True) as tx:
        tx.write("mine.txt", "mine\n")
        other = repo.reality("main").apply({"theirs.txt": "theirs\n"})
        commit = tx.commit("rebased")
    assert commit.parents == (other.oid,)
    main = repo.reality("main")
    assert main.head == commit.oid.encode()
    assert main.read("mine.txt") == b"mine\n"
    assert main.read("theirs.txt") == b"theirs\n"
    assert main.read("a") == b"1\n"


def test_rebase_over_several_moves() -> None:
    repo = make_repo({"a": "1\n"})
    with repo.transaction("main", rebase=True) as tx:
        tx.write("mine.txt", "mine\n")
        for i in range(3):
            repo.reality("main").apply({f"other{i}": f"{i}\n"})
        commit = tx.commit("rebased")
    assert len(repo.log("main")) == 5
    assert sorted(repo.reality("main").files()) == ["a", "mine.txt", "other0", "other1", "other2"]
    assert repo.log("main")[0].oid == commit.oid


def test_rebase_fails_when_paths_overlap() -> None:
    repo = make_repo({"shared.conf": "base\n"})
    with repo.transaction("main", rebase=True) as tx:
        tx.write("shared.conf", "mine\n")
        repo.reality("main").apply({"shared.conf": "theirs\n"})
        moved = tip(repo)
        with pytest.raises(govc.ConflictError):
            tx.commit("overlap")
    assert tip(repo) == moved
    assert repo.reality("main").read("shared.conf") == b"theirs\n"


def test_rebase_fails_when_the_other_side_removed_my_path() -> None:
    repo = make_repo({"shared.conf": "base\n", "other": "o\n"})
    with repo.transaction("main", rebase=True) as tx:
        tx.write("shared.conf", "mine\n")
        repo.reality("main").apply({"shared.conf": None})
        with pytest.raises(govc.ConflictError):
            tx.commit("overlap")
    assert not repo.reality("main").exists("shared.conf")


def test_rebase_fails_when_i_remove_a_path_they_changed() -> None:
    repo = make_repo({"shared.conf": "base\n"})
    with repo.transaction("main", rebase=True) as tx:
        tx.remove("shared.conf")
        repo.reality("main").apply({"shared.conf": "theirs\n"})
        with pytest.raises(govc.ConflictError):
            tx.commit("overlap")
    assert repo.reality("main").read("shared.conf") == b"theirs\n"


def test_without_rebase_disjoint_paths_still_conflict() -> None:
    repo = make_repo({"a": "1\n"})
    with repo.transaction("main") as tx:
        tx.write("mine", "m\n")
        repo.reality("main").apply({"theirs": "t\n"})
        with pytest.raises(govc.ConflictError):
            tx.commit("no rebase")


# -- several refs in one transaction -----------------------------------------------------------


def make_main_and_staging() -> govc.Repository:
    repo = make_repo({"app.conf": "v1\n"})
    with repo.transaction("staging") as tx:
        tx.write("staging.conf", "s1\n")
        tx.commit("staging starts")
    return repo


def test_multi_ref_transaction_moves_every_ref_in_one_event() -> None:
    repo = make_main_and_staging()
    events = record_events(repo)
    with repo.transaction(["main", "staging"], author=OPS) as tx:
        tx.write("app.conf", "v2\n")
        tx.write("app.conf", "v2-staging\n", branch="staging")
        tx.write("staging.conf", "s2\n", branch="staging")
        first = tx.commit("both")
    assert set(tx.committed) == {"refs/heads/main", "refs/heads/staging"}
    assert first == tx.committed["refs/heads/main"]
    assert repo.reality("main").read("app.conf") == b"v2\n"
    staging = repo.reality("staging")
    assert staging.read("app.conf") == b"v2-staging\n"
    assert staging.read("staging.conf") == b"s2\n"
    assert not repo.reality("main").exists("staging.conf")
    assert len(events) == 1
    assert {c.name for c in events[0].changes} == {"refs/heads/main", "refs/heads/staging"}


def test_multi_ref_transaction_only_moves_refs_with_changes() -> None:
    repo = make_main_and_staging()
    staging_before = tip(repo, "staging")
    with repo.transaction(["main", "staging"]) as tx:
        tx.write("only-main", "1\n")
        tx.commit("main only")
    assert tip(repo, "staging") == staging_before
    assert set(tx.committed) == {"refs/heads/main"}


def test_multi_ref_transaction_with_one_stale_ref_moves_nothing() -> None:
    repo = make_main_and_staging()
    with repo.transaction(["main", "staging"]) as tx:
        tx.write("app.conf", "v2\n")
        tx.write("staging.conf", "s2\n", branch="staging")
        repo.reality("staging").apply({"elsewhere": "x\n"})
        main_before, staging_before = tip(repo), tip(repo, "staging")
        events = record_events(repo)
        with pytest.raises(govc.ConflictError):
            tx.commit("both")
    assert tip(repo) == main_before
    assert tip(repo, "staging") == staging_before
    assert repo.reality("main").read("app.conf") == b"v1\n"
    assert events == []


def test_multi_ref_transaction_rebases_the_stale_ref_when_disjoint() -> None:
    repo = make_main_and_staging()
    with repo.transaction(["main", "staging"], rebase=True) as tx:
        tx.write("app.conf", "v2\n")
        tx.write("staging.conf", "s2\n", branch="staging")
        moved = repo.reality("staging").apply({"elsewhere": "x\n"})
        tx.commit("both")
    assert tx.committed["refs/heads/staging"].parents == (moved.oid,)
    staging = repo.reality("staging")
    assert staging.read("elsewhere") == b"x\n"
    assert staging.read("staging.conf") == b"s2\n"
    assert repo.reality("main").read("app.conf") == b"v2\n"


def test_write_to_a_branch_outside_the_transaction_is_refused() -> None:
    repo = make_main_and_staging()
    with repo.transaction("main") as tx, pytest.raises(KeyError):
        tx.write("x", "1\n", branch="staging")


def test_read_and_remove_per_branch() -> None:
    repo = make_main_and_staging()
    with repo.transaction(["main", "staging"]) as tx:
        assert tx.read("staging.conf", branch="staging") == b"s1\n"
        with pytest.raises(KeyError):
            tx.read("staging.conf")
        tx.remove("staging.conf", branch="staging")
        tx.commit("drop")
    assert not repo.reality("staging").exists("staging.conf")


def test_transaction_on_a_reality_and_a_branch_together() -> None:
    repo = make_repo({"app.conf": "v1\n"})
    repo.parallel_reality("canary")
    with repo.transaction(["main", "canary"]) as tx:
        tx.write("app.conf", "main\n")
        tx.write("app.conf", "canary\n", branch="canary")
        tx.commit("both")
    assert set(tx.committed) == {"refs/heads/main", "refs/realities/canary"}
    assert repo.reality("canary").read("app.conf") == b"canary\n"
    assert repo.reality("main").read("app.conf") == b"main\n"


# -- rollback ----------------------------------------------------------------------------------


def test_exception_in_the_with_block_rolls_back() -> None:
    repo = make_repo({"a": "1\n"})
    before, objects = tip(repo), len(repo.objects)
    events = record_events(repo)

    class Boom(Exception):
        pass

    with pytest.raises(Boom), repo.transaction("main") as tx:
        tx.write("a", "2\n")
        tx.write("b", "new\n")
        raise Boom
    assert tip(repo) == before
    assert len(repo.objects) == objects
    assert repo.reality("main").read("a") == b"1\n"
    assert events == []
    with pytest.raises(RuntimeError):
        tx.write("c", "after rollback\n")


def test_leaving_the_block_without_commit_writes_nothing() -> None:
    repo = make_repo({"a": "1\n"})
    before, objects = tip(repo), len(repo.objects)
    with repo.transaction("main") as tx:
        tx.write("a", "2\n")
    assert tip(repo) == before
    assert len(repo.objects) == objects


def test_explicit_rollback() -> None:
    repo = make_repo({"a": "1\n"})
    before = tip(repo)
    tx = repo.transaction("main")
    tx.write("a", "2\n")
    tx.rollback()
    assert tip(repo) == before
    with pytest.raises(RuntimeError):
        tx.write("a", "3\n")


# -- validation --------------------------------------------------------------------------------


def secret_repo() -> govc.Repository:
    repo = make_repo({"app.conf": "ok\n"})

    @repo.validator
    def no_plaintext_secrets(change: govc.Change) -> None:
        for path, data in change.files.items():
            if data is not None and b"password=" in data:
                raise govc.ValidationError(f"secret in {path}")

    return repo


def test_validate_raises_and_writes_nothing() -> None:
    repo = secret_repo()
    before, objects = tip(repo), len(repo.objects)
    events = record_events(repo)
    with repo.transaction("main") as tx:
        tx.write("app.conf", "password=hunter2\n")
        with pytest.raises(govc.ValidationError, match=r"secret in app\.conf"):
            tx.validate()
        with pytest.raises(govc.ValidationError, match=r"secret in app\.conf"):
            tx.commit("leak")
    assert tip(repo) == before
    assert len(repo.objects) == objects
    assert events == []


def test_validate_passes_and_commit_proceeds() -> None:
    repo = secret_repo()
    with repo.transaction("main") as tx:
        tx.write("app.conf", "safe\n")
        tx.validate()
        tx.commit("fine")
    assert repo.reality("main").read("app.conf") == b"safe\n"


def test_fixing_the_content_after_a_failed_validate_lets_the_commit_through() -> None:
    repo = secret_repo()
    with repo.transaction("main") as tx:
        tx.write("app.conf", "password=x\n")
        with pytest.raises(govc.ValidationError):
            tx.validate()
        tx.write("app.conf", "password_file=/run/secret\n")
        tx.validate()
        tx.commit("fixed")
    assert repo.reality("main").read("app.conf") == b"password_file=/run/secret\n"


def test_validator_veto_in_a_multi_ref_transaction_moves_nothing() -> None:
    repo = secret_repo()
    with repo.transaction("staging") as tx:
        tx.write("s", "1\n")
        tx.commit("staging")
    before = dict(repo.refs.list())
    objects = len(repo.objects)
    with repo.transaction(["main", "staging"]) as tx:
        tx.write("fine", "1\n")
        tx.write("bad", "password=1\n", branch="staging")
        with pytest.raises(govc.ValidationError):
            tx.commit("one bad")
    assert dict(repo.refs.list()) == before
    assert len(repo.objects) == objects


def test_validation_error_and_conflict_error_are_exceptions() -> None:
    assert issubclass(govc.ValidationError, Exception)
    assert issubclass(govc.ConflictError, Exception)


# -- concurrency -------------------------------------------------------------------------------


def test_threads_committing_with_rebase_lose_nothing() -> None:
    repo = make_repo({"base": "0\n"})
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def worker(n: int) -> None:
        try:
            barrier.wait()
            for i in range(10):
                with repo.transaction("main", rebase=True) as tx:
                    tx.write(f"w{n}/f{i}", f"{n}.{i}\n")
                    tx.commit(f"worker {n} commit {i}")
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    main = repo.reality("main")
    assert len(repo.log("main")) == 81
    files = set(main.files())
    assert files == {"base"} | {f"w{n}/f{i}" for n in range(8) for i in range(10)}
    assert main.read("w3/f7") == b"3.7\n"


def test_threads_committing_without_rebase_either_win_or_conflict() -> None:
    repo = make_repo({"counter": "0\n"})
    wins: list[str] = []
    conflicts: list[int] = []
    other: list[BaseException] = []
    barrier = threading.Barrier(8)
    lock = threading.Lock()

    def worker(n: int) -> None:
        try:
            barrier.wait()
            for _ in range(5):
                with repo.transaction("main") as tx:
                    value = int(tx.read("counter"))
                    tx.write("counter", f"{value + 1}\n")
                    try:
                        c = tx.commit(f"worker {n}")
                    except govc.ConflictError:
                        with lock:
                            conflicts.append(n)
                    else:
                        with lock:
                            wins.append(c.oid)
        except BaseException as e:
            other.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert other == []
    assert len(wins) + len(conflicts) == 40
    # Every successful commit is on main's history and the counter counts exactly them: no lost update.
    assert int(repo.reality("main").read("counter")) == len(wins)
    assert {c.oid for c in repo.log("main")[: len(wins)]} == set(wins)


# -- durable repositories ----------------------------------------------------------------------


def test_durable_commit_survives_reopening(tmp_path: Path) -> None:
    repo = govc.Repository.open(tmp_path)
    with repo.transaction("main", author=OPS) as tx:
        tx.write("nginx.conf", "ssl on;\n")
        commit = tx.commit("durable")
    again = govc.Repository.open(tmp_path)
    assert again.reality("main").head == commit.oid.encode()
    assert again.reality("main").read("nginx.conf") == b"ssl on;\n"
    assert again.log("main")[0].author == OPS


def test_durable_rolled_back_transaction_is_not_on_disk(tmp_path: Path) -> None:
    repo = govc.Repository.open(tmp_path)
    repo.reality("main").apply({"a": "1\n"})
    with pytest.raises(ZeroDivisionError), repo.transaction("main") as tx:
        tx.write("a", "2\n")
        _ = 1 / 0
    again = govc.Repository.open(tmp_path)
    assert again.reality("main").read("a") == b"1\n"


# -- the objects are git's own -----------------------------------------------------------------


@needs_git
def test_api_objects_are_byte_exact_git_objects(tmp_path: Path) -> None:
    repo = govc.Repository("exact")
    # Names chosen to exercise git's tree order, where a directory sorts as "name/".
    files = {
        "a.txt": "a\n",
        "a/b.txt": "in a dir\n",
        "a-b": "dash\n",
        "a0": "zero\n",
        "ab/c/d.txt": "deep\n",
        "Z": "upper\n",
        "unicode-é.txt": "é\n",
        "bin.dat": bytes(range(256)),
    }
    with repo.transaction("main", author="Ops Team <ops@example.com>") as tx:
        for path, data in files.items():
            tx.write(path, data)
        tx.write("tools/run.sh", "#!/bin/sh\necho hi\n", mode=MODE_EXEC)
        first = tx.commit("first\n\nwith a body\n")
    with repo.transaction("main") as tx:
        tx.remove("a/b.txt")
        tx.write("a.txt", "changed\n")
        second = tx.commit("second (no trailing newline)")
    exported = export_repository(repo, tmp_path / "exact.git")
    fsck = git("--git-dir", exported, "fsck", "--strict", "--full", "--no-dangling", check=False)
    assert fsck.returncode == 0 and not fsck.stdout.strip() and not fsck.stderr.strip(), fsck.stderr
    assert git("--git-dir", exported, "rev-parse", "main").stdout.decode().strip() == second.oid
    assert git("--git-dir", exported, "rev-parse", "main^").stdout.decode().strip() == first.oid

    work = tmp_path / "work"
    git("clone", "-q", exported, work)
    # Git rebuilds the tree from the checked-out files: its ids must match ours exactly.
    git("-C", work, "rm", "-q", "-r", "--cached", ".")
    git("-C", work, "add", "-A")
    assert git("-C", work, "write-tree").stdout.decode().strip() == second.tree
    assert (work / "a.txt").read_text() == "changed\n"
    assert not (work / "a" / "b.txt").exists()
    assert (work / "bin.dat").read_bytes() == bytes(range(256))
    assert (work / "unicode-é.txt").read_text() == "é\n"
    assert os.stat(work / "tools" / "run.sh").st_mode & stat.S_IXUSR
    log = git("-C", work, "log", "--format=%an <%ae>|%s", "main").stdout.decode().splitlines()
    assert log[1] == "Ops Team <ops@example.com>|first"
    body = git("-C", work, "log", "-1", "--format=%B", first.oid).stdout.decode()
    assert body == "first\n\nwith a body\n\n"
