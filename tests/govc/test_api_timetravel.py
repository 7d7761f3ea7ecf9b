"""Time travel: refs, trees and files as they were at a moment, from the reflog, falling back to
commit dates for history older than the reflog (imported or pushed)."""

from __future__ import annotations

import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

import govc
from govc.portability import import_repository
from storage.disk import DataDirectory
from storage.interfaces import RefUpdate
from tests.helpers import commit_object, git, tree_object

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git binary")

OPS = "ops <ops@example.com>"

# Commit dates of the hand-made history (2020-09-13 and on).
T1, T2, T3 = 1_600_000_000, 1_600_001_000, 1_600_002_000


def moment() -> float:
    """A time strictly between the update just made and the next one."""
    time.sleep(0.002)
    now = time.time()
    time.sleep(0.002)
    return now


def history() -> tuple[govc.Repository, list[govc.Commit], list[float]]:
    """main: c1 (app.conf v1) -> c2 (app.conf v2, extra.txt) -> c3 (extra.txt removed), with a
    moment recorded before c1 and after each commit. The first is two seconds early: commit dates
    are whole seconds, so "just before" could share the first commit's second."""
    repo = govc.Repository("tt")
    times = [time.time() - 2]
    commits = []
    for changes in ({"app.conf": "v1\n"}, {"app.conf": "v2\n", "extra.txt": "e\n"}, {"extra.txt": None}):
        commits.append(repo.reality("main").apply(changes, author=OPS))
        times.append(moment())
    return repo, commits, times


def test_snapshot_between_commits() -> None:
    repo, commits, times = history()
    for i, commit in enumerate(commits):
        snapshot = repo.time_travel(times[i + 1])
        assert isinstance(snapshot, govc.Snapshot)
        assert snapshot.ref("main") == commit.oid.encode()
        assert snapshot.last_commit().oid == commit.oid
        assert snapshot.last_commit().author == OPS
    assert repo.time_travel(times[1]).read("app.conf") == b"v1\n"
    assert repo.time_travel(times[2]).read("app.conf") == b"v2\n"
    assert repo.time_travel(times[3]).read("app.conf") == b"v2\n"


def test_snapshot_before_the_first_commit() -> None:
    repo, _, times = history()
    before = repo.time_travel(times[0])
    assert before.ref("main") is None
    with pytest.raises(KeyError):
        before.read("app.conf")
    with pytest.raises(KeyError):
        before.last_commit()
    assert before.files() == []
    assert before.refs() == {}
    long_ago = repo.time_travel(datetime(2024, 1, 15, 3, 42))
    with pytest.raises(KeyError):
        long_ago.read("app.conf")


def test_snapshot_after_a_file_was_deleted() -> None:
    repo, _, times = history()
    assert repo.time_travel(times[2]).read("extra.txt") == b"e\n"
    after = repo.time_travel(times[3])
    with pytest.raises(KeyError):
        after.read("extra.txt")
    assert after.files() == ["app.conf"]
    assert repo.time_travel(times[2]).files() == ["app.conf", "extra.txt"]


def test_snapshot_of_a_missing_file_raises_key_error() -> None:
    repo, _, times = history()
    with pytest.raises(KeyError):
        repo.time_travel(times[1]).read("never-existed")


def test_snapshot_accepts_datetimes() -> None:
    repo, commits, times = history()
    local = datetime.fromtimestamp(times[2])  # naive: local time
    assert repo.time_travel(local).ref() == commits[1].oid.encode()
    aware = datetime.fromtimestamp(times[1], tz=UTC)
    assert repo.time_travel(aware).read("app.conf") == b"v1\n"
    assert repo.time_travel(int(times[3]) + 1).ref() == commits[2].oid.encode()


def test_snapshot_is_stable_while_the_repository_moves_on() -> None:
    repo, _, times = history()
    snapshot = repo.time_travel(times[2])
    repo.reality("main").apply({"app.conf": "v9\n"})
    assert snapshot.read("app.conf") == b"v2\n"
    assert repo.time_travel(times[2]).read("app.conf") == b"v2\n"
    assert repo.time_travel(time.time()).read("app.conf") == b"v9\n"


def test_snapshot_of_a_deleted_branch() -> None:
    repo, _, _ = history()
    with repo.transaction("feature") as tx:
        tx.write("f.txt", "feature\n")
        tx.commit("feature")
    alive = moment()
    tip = repo.reality("feature").head
    repo.update_refs([RefUpdate("refs/heads/feature", None, tip)], who="x", message="drop", source="api")
    gone = moment()
    assert repo.time_travel(alive).read("f.txt", branch="feature") == b"feature\n"
    assert repo.time_travel(alive).ref("feature") == tip
    assert repo.time_travel(gone).ref("feature") is None
    with pytest.raises(KeyError):
        repo.time_travel(gone).read("f.txt", branch="feature")
    assert "refs/heads/feature" in repo.time_travel(alive).refs()
    assert "refs/heads/feature" not in repo.time_travel(gone).refs()


def test_snapshot_refs_as_they_were() -> None:
    repo, commits, times = history()
    canary = repo.parallel_reality("canary")
    created = moment()
    canary.apply({"app.conf": "canary\n"})
    later = moment()
    assert repo.time_travel(times[3]).refs() == {"refs/heads/main": commits[2].oid.encode()}
    assert repo.time_travel(created).refs() == {
        "refs/heads/main": commits[2].oid.encode(), "refs/realities/canary": commits[2].oid.encode(),
    }
    assert repo.time_travel(created).read("app.conf", branch="canary") == b"v2\n"
    assert repo.time_travel(later).read("app.conf", branch="canary") == b"canary\n"
    assert repo.time_travel(later).last_commit("canary").oid == canary.head.decode()


def test_time_travel_after_reopening_a_durable_repository(tmp_path: Path) -> None:
    repo = govc.Repository.open(tmp_path)
    before = time.time() - 2
    first = repo.reality("main").apply({"a": "1\n"})
    between = moment()
    repo.reality("main").apply({"a": "2\n"})
    again = govc.Repository.open(tmp_path)
    assert again.time_travel(before).ref() is None
    assert again.time_travel(between).ref() == first.oid.encode()
    assert again.time_travel(between).read("a") == b"1\n"
    assert again.time_travel(time.time()).read("a") == b"2\n"


# -- commit-date fallback ----------------------------------------------------------------------


def dated_history(repo: govc.Repository) -> list[bytes]:
    """Three commits dated T1, T2, T3 written straight into the store (no ref, no reflog)."""
    tips: list[bytes] = []
    for n, when in enumerate((T1, T2, T3), start=1):
        blob = repo.objects.add_object(3, f"v{n}\n".encode())
        tree = repo.objects.add_object(2, tree_object([(b"100644", b"f.txt", blob)]))
        tips.append(repo.objects.add_object(1, commit_object(tree, tips[-1:], f"c{n}\n".encode(), when)))
    return tips


def test_fallback_to_commit_dates_without_any_reflog() -> None:
    repo = govc.Repository()
    tips = dated_history(repo)
    repo.refs.load({"refs/heads/main": tips[-1]}, {"HEAD": "refs/heads/main"})  # as restored, no log
    assert repo.time_travel(T1 - 1).ref() is None
    assert repo.time_travel(T1).ref() == tips[0]
    assert repo.time_travel(T1 + 500).read("f.txt") == b"v1\n"
    assert repo.time_travel(T2 + 500).read("f.txt") == b"v2\n"
    assert repo.time_travel(T3 + 500).read("f.txt") == b"v3\n"
    with pytest.raises(KeyError):
        repo.time_travel(T1 - 1).read("f.txt")


def test_fallback_for_moments_before_the_reflog_begins() -> None:
    repo = govc.Repository()
    tips = dated_history(repo)
    repo.refs.load({"refs/heads/main": tips[1]}, {"HEAD": "refs/heads/main"})
    logged_from = moment()
    api = repo.reality("main").apply({"f.txt": "api\n"})
    assert repo.time_travel(T1 + 500).read("f.txt") == b"v1\n"
    assert repo.time_travel(T2 + 500).read("f.txt") == b"v2\n"
    assert repo.time_travel(logged_from).read("f.txt") == b"v2\n"
    assert repo.time_travel(time.time()).ref() == api.oid.encode()


@needs_git
def test_fallback_for_an_imported_history(tmp_path: Path) -> None:
    """History imported from git predates govc's reflog (whose first entry is the import
    creating the ref): moments before the import are answered from commit dates."""
    source = tmp_path / "source"
    git("init", "-q", "-b", "main", source)
    oids = []
    for n, when in enumerate((T1, T2, T3), start=1):
        (source / "f.txt").write_text(f"v{n}\n")
        if n == 2:
            (source / "only-in-2.txt").write_text("two\n")
        if n == 3:
            (source / "only-in-2.txt").unlink()
        git("-C", source, "add", "-A")
        stamp = {"GIT_AUTHOR_DATE": f"{when} +0000", "GIT_COMMITTER_DATE": f"{when} +0000"}
        git("-C", source, "commit", "-q", "-m", f"c{n}", env=stamp)
        oids.append(git("-C", source, "rev-parse", "HEAD").stdout.decode().strip())
    repo = import_repository(DataDirectory(tmp_path / "data"), source, "imported")
    assert repo.reality("main").read("f.txt") == b"v3\n"

    assert repo.time_travel(T1 - 10).ref() is None
    assert repo.time_travel(T1 + 10).ref() == oids[0].encode()
    assert repo.time_travel(T1 + 10).read("f.txt") == b"v1\n"
    middle = repo.time_travel(datetime.fromtimestamp(T2 + 10, tz=UTC))
    assert middle.read("f.txt") == b"v2\n"
    assert middle.read("only-in-2.txt") == b"two\n"
    assert middle.last_commit().author == "A U Thor <author@example.com>"
    after = repo.time_travel(T3 + 10)
    with pytest.raises(KeyError):
        after.read("only-in-2.txt")
    assert after.read("f.txt") == b"v3\n"
    reopened = govc.Repository.open(tmp_path / "data", "imported")
    assert reopened.time_travel(T2 + 10).read("f.txt") == b"v2\n"


def test_fallback_for_a_history_that_arrived_in_one_update() -> None:
    """A branch created by one update (as a push creates it) with older commits behind it."""
    repo = govc.Repository()
    tips = dated_history(repo)
    repo.update_refs([RefUpdate("refs/heads/main", tips[-1], None)], who="pusher", message="push",
                     source="push")
    assert repo.time_travel(time.time()).read("f.txt") == b"v3\n"
    assert repo.time_travel(T2 + 500).read("f.txt") == b"v2\n"
