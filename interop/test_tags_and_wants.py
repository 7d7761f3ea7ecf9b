"""Wants by object id, tag auto-following and tag pushes, with the real git client (v0 and v2).

Sample history: main is c1 - c1b - c2 - c4 - M5 - c6 (c3 merged in M5); ``v1.0`` is an
annotated tag of M5 and ``v1.0-nested`` an annotated tag of that tag; ``light`` marks c2.
"""

from __future__ import annotations

import re
from pathlib import Path

from interop.conftest import Git, Served, dates

UPSTREAM_EPOCH = 1_800_000_000


def _objects_of(git: Git, repo: Path, rev: str) -> list[str]:
    out = git("rev-list", "--objects", rev, cwd=repo).stdout
    return sorted(line.split(" ", 1)[0] for line in out.splitlines())


def _fetch_by_id_into_empty_repo(git: Git, served: Served, tmp_path: Path, oid: str) -> Path:
    work = tmp_path / "work.git"
    git("init", "-q", "--bare", work)
    git("fetch", "-q", served.url, f"{oid}:refs/heads/main", cwd=work)
    assert git.rev_parse(work, "refs/heads/main") == oid
    assert git.rev_parse(work, "FETCH_HEAD") == oid
    assert _objects_of(git, work, "main") == _objects_of(git, served.source, oid)
    git.fsck(work)
    return work


def test_fetch_by_id_of_a_commit_that_is_no_tip(git: Git, served: Served, tmp_path: Path) -> None:
    """``git fetch URL <id>`` of c4 (reachable, but no ref points at it) gets c4 and its history."""
    c4 = git.rev_parse(served.source, "main~2")
    assert c4 not in git.ls_remote(served.url).values()
    _fetch_by_id_into_empty_repo(git, served, tmp_path, c4)


def test_fetch_by_id_of_a_tip(git: Git, served: Served, tmp_path: Path) -> None:
    """``git fetch URL <id>`` of the commit at feature's tip, named by id only."""
    _fetch_by_id_into_empty_repo(git, served, tmp_path, git.rev_parse(served.source, "feature"))


def test_fetch_by_id_of_an_unknown_object_fails(git: Git, served: Served, tmp_path: Path) -> None:
    """A want for an id the server does not have is refused with upload-pack's "not our ref"."""
    work = tmp_path / "work"
    git("init", "-q", work)
    unknown = "1234567890" * 4
    result = git.fails("fetch", served.url, unknown, cwd=work)
    assert f"not our ref {unknown}" in result.stderr, result.describe()


def test_fetch_follows_new_annotated_tags_of_the_fetched_history(
    git: Git, served: Served, tmp_path: Path
) -> None:
    """A fetch of main brings a new annotated tag of a new main commit, and only that tag.

    The clone follows main only. Upstream then tags a new main commit (``v2.0``) and adds one
    more on top, and tags a new feature commit (``vf``). ``git fetch`` (no ``--tags``) must
    store ``v2.0`` and not ``vf``. The tagged commit is not the tip the client asks for, so
    the tag object has to come in the pack through include-tag; otherwise git asks for it by
    id in a second request, which the trace would show.
    """
    work = tmp_path / "work"
    git("clone", "-q", "--single-branch", "--branch", "main", served.url, work)
    src = served.source
    tagged = git.commit_file(src, "next.txt", "next\n", "next on main", date=UPSTREAM_EPOCH)
    git("tag", "-a", "v2.0", "-m", "Version 2.0", cwd=src, env=dates(UPSTREAM_EPOCH + 1))
    main_tip = git.commit_file(src, "next.txt", "after\n", "after the tag", date=UPSTREAM_EPOCH + 1)
    git("checkout", "-q", "feature", cwd=src)
    git.commit_file(src, "f2.txt", "f2\n", "next on feature", date=UPSTREAM_EPOCH + 2)
    git("tag", "-a", "vf", "-m", "Feature tag", cwd=src, env=dates(UPSTREAM_EPOCH + 3))
    git("checkout", "-q", "main", cwd=src)
    git("push", "-q", served.url, "main", "feature", "v2.0", "vf", cwd=src)

    trace = tmp_path / "packet.txt"
    git("fetch", "-q", "origin", cwd=work, env={"GIT_TRACE_PACKET": str(trace)})
    assert git.rev_parse(work, "origin/main") == main_tip
    tags = git.refs(work, "refs/tags/")
    v20 = git.rev_parse(src, "refs/tags/v2.0")
    assert tags["refs/tags/v2.0"] == v20
    assert "refs/tags/vf" not in tags
    assert git("cat-file", "-t", "v2.0", cwd=work).stdout.strip() == "tag"
    assert git.rev_parse(work, "v2.0^{}") == tagged
    text = trace.read_text("utf-8", "replace")
    assert not re.search(rf"> want {v20}", text), "the tag object was not in the pack (include-tag ignored)"
    git.fsck(work)


def test_single_branch_clone_follows_a_tag_of_a_tag(git: Git, served: Served, tmp_path: Path) -> None:
    """A clone of main alone stores ``v1.0`` and ``v1.0-nested`` with both tag objects.

    ``v1.0-nested`` peels through two tag objects to M5 on main, so the server has to put the
    whole chain in the pack.
    """
    work = tmp_path / "work"
    trace = tmp_path / "packet.txt"
    git(
        "clone",
        "-q",
        "--single-branch",
        "--branch",
        "main",
        served.url,
        work,
        env={"GIT_TRACE_PACKET": str(trace)},
    )
    src = served.source
    expected = {
        name: oid
        for name, oid in git.refs(src, "refs/tags/").items()
        if name in ("refs/tags/v1.0", "refs/tags/v1.0-nested", "refs/tags/light", "refs/tags/blob-tag")
    }
    assert git.refs(work, "refs/tags/") == expected
    nested = git("cat-file", "tag", "v1.0-nested", cwd=work).stdout
    assert nested.startswith(f"object {expected['refs/tags/v1.0']}\ntype tag\n"), nested
    assert git.rev_parse(work, "v1.0-nested^{}") == git.rev_parse(src, "main~1")
    git.fsck(work)


def test_push_creates_and_deletes_tags(git: Git, served: Served, tmp_path: Path) -> None:
    """Lightweight and annotated tags, and a tag of a tag, pushed then deleted.

    Only the outer tag of the nested pair is pushed by name: the inner tag object must travel
    with it, and ``ls-remote`` must peel the outer one through both to the commit.
    """
    src = served.source
    c4 = git.rev_parse(src, "main~2")
    git("tag", "lw", c4, cwd=src)
    git("tag", "-a", "ann", "-m", "annotated", c4, cwd=src, env=dates(UPSTREAM_EPOCH))
    git("tag", "-a", "inner", "-m", "inner tag", "main", cwd=src, env=dates(UPSTREAM_EPOCH + 1))
    git("tag", "-a", "outer", "-m", "a tag of a tag", "inner", cwd=src, env=dates(UPSTREAM_EPOCH + 2))
    git("push", "-q", served.url, "lw", "ann", "outer", cwd=src)

    remote = git.ls_remote(served.url, "--tags")
    assert remote["refs/tags/lw"] == c4
    assert remote["refs/tags/ann"] == git.rev_parse(src, "refs/tags/ann")
    assert remote["refs/tags/ann^{}"] == c4
    assert remote["refs/tags/outer"] == git.rev_parse(src, "refs/tags/outer")
    assert remote["refs/tags/outer^{}"] == git.rev_parse(src, "main")
    assert "refs/tags/inner" not in remote

    work = tmp_path / "work"
    git("clone", "-q", "--bare", served.url, work)
    inner = git.rev_parse(src, "refs/tags/inner")
    assert git("cat-file", "-t", inner, cwd=work).stdout.strip() == "tag"
    assert git("cat-file", "tag", "outer", cwd=work).stdout.startswith(f"object {inner}\ntype tag\n")
    git.fsck(work)

    git("push", "-q", served.url, ":refs/tags/lw", ":refs/tags/ann", ":refs/tags/outer", cwd=src)
    remote = git.ls_remote(served.url, "--tags")
    gone = {"refs/tags/lw", "refs/tags/ann", "refs/tags/ann^{}", "refs/tags/outer", "refs/tags/outer^{}"}
    assert not gone & set(remote), remote
    assert remote["refs/tags/v1.0"] == git.rev_parse(src, "refs/tags/v1.0")
