"""Compaction: many packs become one, nothing is lost, and a crash half-way loses nothing."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

from govc.maintenance import compact
from govc.registry import Registry
from govc.repository import Repository
from storage.disk import DataDirectory
from storage.interfaces import RefUpdate

ENV = {"GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent", "PATH": "/usr/bin:/bin",
       "GIT_AUTHOR_NAME": "A", "GIT_AUTHOR_EMAIL": "a@example.com",
       "GIT_COMMITTER_NAME": "A", "GIT_COMMITTER_EMAIL": "a@example.com"}


def git(cwd: Path, *args: str, stdin: bytes | None = None) -> bytes:
    return subprocess.run(["git", "-C", str(cwd), *args], input=stdin, env=ENV, check=True,
                          capture_output=True).stdout


def push_commits(repo: Repository, work: Path, count: int) -> list[bytes]:
    """Make ``count`` commits in ``work`` and feed each as its own thin pack, as pushes do."""
    tips = []
    for i in range(count):
        (work / f"f{i % 3}.txt").write_text(f"version {i}\n" + "line\n" * (i * 50))
        git(work, "add", "-A")
        git(work, "commit", "-q", "-m", f"c{i}")
        tip = git(work, "rev-parse", "HEAD").strip()
        old = repo.refs.get("refs/heads/main")
        revs = tip + (b"\n^" + old if old else b"") + b"\n"
        data = git(work, "pack-objects", "--revs", "--thin", "--stdout", "--delta-base-offset", "-q",
                   stdin=revs)
        repo.add_pack(repo.objects.index_pack(data))
        repo.update_refs([RefUpdate("refs/heads/main", tip, old)], who="t", message="push", source="push")
        tips.append(tip)
    return tips


def all_objects(work: Path) -> set[bytes]:
    return {line.split(b" ")[0] for line in git(work, "rev-list", "--all", "--objects").splitlines()}


def test_compaction_merges_packs_and_keeps_every_object(tmp_path: Path) -> None:
    work = tmp_path / "work"
    git(tmp_path, "init", "-q", "-b", "main", str(work))
    directory = DataDirectory(tmp_path / "data")
    registry = Registry(directory)
    repo = registry.create("app")
    push_commits(repo, work, 10)
    assert len(repo.objects.packs) == 10
    expected = all_objects(work)
    contents = {oid: repo.objects.get(oid) for oid in expected}

    assert compact(repo, threshold=4)
    assert len(repo.objects.packs) == 1
    assert {oid: repo.objects.get(oid) for oid in expected} == contents
    pack_files = sorted((directory.pack_dir("app")).glob("pack-*.pack"))
    assert len(pack_files) == 1
    out = subprocess.run(["git", "verify-pack", "-v", str(pack_files[0].with_suffix(".idx"))],
                         capture_output=True, check=True).stdout
    assert b"chain length" in out  # stored deltas survived the merge

    reloaded = Registry(DataDirectory(tmp_path / "data")).get("app")
    assert reloaded is not None
    assert {oid: reloaded.objects.get(oid) for oid in expected} == contents
    assert not compact(reloaded, threshold=4)  # one pack: nothing to do


def test_compaction_killed_before_removing_old_packs_loses_nothing(tmp_path: Path, monkeypatch) -> None:
    work = tmp_path / "work"
    git(tmp_path, "init", "-q", "-b", "main", str(work))
    registry = Registry(DataDirectory(tmp_path / "data"))
    repo = registry.create("app")
    push_commits(repo, work, 5)
    expected = all_objects(work)

    def crash(packs: object) -> None:
        raise SystemExit("killed")

    monkeypatch.setattr(repo.backend, "remove_packs", crash)
    with contextlib.suppress(SystemExit):
        compact(repo, threshold=2)
    reloaded = Registry(DataDirectory(tmp_path / "data")).get("app")
    assert reloaded is not None
    assert len(reloaded.objects.packs) == 6  # the five old ones and the merged one
    for oid in expected:
        assert reloaded.objects.has(oid)
    assert compact(reloaded, threshold=2)
    assert len(reloaded.objects.packs) == 1
    for oid in expected:
        reloaded.objects.get(oid)


def test_ephemeral_realities_never_reach_disk(tmp_path: Path) -> None:
    work = tmp_path / "work"
    git(tmp_path, "init", "-q", "-b", "main", str(work))
    registry = Registry(DataDirectory(tmp_path / "data"))
    repo = registry.create("app")
    (tip,) = push_commits(repo, work, 1)
    repo.update_refs([RefUpdate("refs/realities/canary", tip, None)], who="t", message="try",
                     source="api", ephemeral=True)
    repo.update_refs([RefUpdate("refs/realities/canary", tip, tip)], who="t", message="again",
                     source="api")  # later updates of an ephemeral ref stay ephemeral
    repo.update_refs([RefUpdate("refs/realities/durable", tip, None)], who="t", message="keep",
                     source="api")
    assert repo.refs.get("refs/realities/canary") == tip
    reloaded = Registry(DataDirectory(tmp_path / "data")).get("app")
    assert reloaded is not None
    assert reloaded.refs.get("refs/realities/canary") is None
    assert reloaded.refs.get("refs/realities/durable") == tip
    assert reloaded.refs.get("refs/heads/main") == tip
    try:
        repo.update_refs([RefUpdate("refs/heads/x", tip, None)], who="t", message="m", source="api",
                         ephemeral=True)
    except ValueError as e:
        assert "refs/realities/" in str(e)
    else:
        raise AssertionError("an ephemeral ref outside the namespace was accepted")


def test_full_disk_rejects_the_push_and_keeps_serving(tmp_path: Path, monkeypatch) -> None:
    """A write that fails (disk full) is an unpack error for the pusher; memory is unchanged."""
    from govc.receivepack import encode_outcome, receive
    from protocol.receive import PushRequest, RefCommand
    from storage.errors import StorageError

    work = tmp_path / "work"
    git(tmp_path, "init", "-q", "-b", "main", str(work))
    registry = Registry(DataDirectory(tmp_path / "data"))
    repo = registry.create("app")
    (tip,) = push_commits(repo, work, 1)
    (work / "new.txt").write_text("more\n")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "next")
    new = git(work, "rev-parse", "HEAD").strip()
    data = git(work, "pack-objects", "--revs", "--thin", "--stdout", "-q", stdin=new + b"\n^" + tip + b"\n")

    def no_space(pack: object) -> None:
        raise StorageError("cannot store objects: No space left on device")

    monkeypatch.setattr(repo.backend, "store_pack", no_space)
    objects_before = len(repo.objects)
    req = PushRequest([RefCommand(tip, new, "refs/heads/main")], {"report-status": None,
                                                                  "side-band-64k": None})
    outcome = receive(repo, req, data, "me")
    body = b"".join(encode_outcome(req, outcome))
    assert b"unpack unable to store objects" in body
    assert b"ng refs/heads/main unpacker error" in body
    assert b"No space left on device" in body
    assert repo.refs.get("refs/heads/main") == tip
    assert len(repo.objects) == objects_before
    monkeypatch.undo()
    outcome = receive(repo, req, data, "me")  # space again: the same push goes through
    assert outcome.results == [("refs/heads/main", outcome.results[0][1])]
    assert repo.refs.get("refs/heads/main") == new
