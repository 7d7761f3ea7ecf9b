"""Shallow clones and fetches with the real git client, over protocol v0 and v2.

Besides explicit expectations (how many first-parent commits, which commits are in
``.git/shallow``), most tests repeat the same commands against the source repository through
stock git's own ``upload-pack`` (a ``file://`` URL) and require the same shallow boundary and the
same reachable objects: a server that cuts history in another place, or sends too little, fails.

Sample history on main (first parent): c1 - c1b - c2 - c4 - M5 - c6, with c3 merged into M5.
"""

from __future__ import annotations

from pathlib import Path

from interop.conftest import (
    Git,
    Served,
    big_text,
    object_types,
    objects_present_and_missing,
    shallow_commits,
    stock_upload_pack_url,
)

UPSTREAM_EPOCH = 1_800_000_000


def _first_parents(git: Git, repo: Path, rev: str = "HEAD") -> int:
    return int(git("rev-list", "--first-parent", "--count", rev, cwd=repo).stdout)


def _count(git: Git, repo: Path, rev: str = "HEAD") -> int:
    return int(git("rev-list", "--count", rev, cwd=repo).stdout)


def _remote_objects(git: Git, repo: Path) -> list[str]:
    out = git("rev-list", "--objects", "--remotes", cwd=repo).stdout
    return sorted(line.split(" ", 1)[0] for line in out.splitlines())


def _same_as_stock(git: Git, work: Path, oracle: Path) -> None:
    """``work`` (from the server) and ``oracle`` (from stock upload-pack) agree: same shallow
    boundary, same remote-tracking refs, same objects reachable from them.

    Tags are left out: which tags git auto-follows after a deepening fetch differs between
    stateless HTTP and the local transport even with stock git on both ends.
    """
    assert shallow_commits(work) == shallow_commits(oracle), "shallow boundary differs from stock git"
    assert git.refs(work, "refs/remotes/") == git.refs(oracle, "refs/remotes/")
    assert _remote_objects(git, work) == _remote_objects(git, oracle), "objects differ from stock git"


def _both(git: Git, served: Served, tmp_path: Path, *args: str) -> tuple[Path, Path]:
    """Run ``git clone args...`` against the server and against stock upload-pack."""
    work, oracle = tmp_path / "work", tmp_path / "oracle"
    git("clone", "-q", *args, served.url, work)
    git("clone", "-q", *args, stock_upload_pack_url(git, served.source), oracle)
    return work, oracle


def _move_upstream(git: Git, served: Served, n: int) -> list[str]:
    """Commit ``n`` times on main in the source and push: server and oracle move together."""
    tips = [
        git.commit_file(served.source, f"up/{i}.txt", f"upstream {i}\n", f"up {i}", date=UPSTREAM_EPOCH + i)
        for i in range(n)
    ]
    git("push", "-q", served.url, "main", cwd=served.source)
    return tips


def test_clone_depth_n(git: Git, served: Served, tmp_path: Path) -> None:
    """``clone --depth 3``: three first-parent commits; the boundary is both parents' side.

    At depth 3 from c6 the walk reaches c4 (first parent of M5) and c3 (second parent): both
    are shallow, and nothing older is present.
    """
    work, oracle = _both(git, served, tmp_path, "--depth", "3")
    src = served.source
    assert _first_parents(git, work) == 3
    assert _count(git, work) == 4  # c6, M5, c4, c3
    assert shallow_commits(work) == {git.rev_parse(src, "main~2"), git.rev_parse(src, "main~1^2")}
    git.fsck(work)
    assert (work / "data" / "big.txt").read_text() == big_text(2)
    _same_as_stock(git, work, oracle)


def test_fetch_deepen(git: Git, served: Served, tmp_path: Path) -> None:
    """``fetch --deepen=2`` after ``clone --depth 1`` moves the boundary two commits back."""
    work, oracle = _both(git, served, tmp_path, "--depth", "1")
    assert shallow_commits(work) == {git.rev_parse(served.source, "main")}
    for repo in (work, oracle):
        git("fetch", "-q", "--deepen=2", "origin", cwd=repo)
    assert _first_parents(git, work) == 3
    assert shallow_commits(work) == {
        git.rev_parse(served.source, "main~2"),
        git.rev_parse(served.source, "main~1^2"),
    }
    git.fsck(work)
    _same_as_stock(git, work, oracle)


def test_fetch_unshallow(git: Git, served: Served, tmp_path: Path) -> None:
    """``fetch --unshallow`` completes a single-branch shallow clone: no shallow file remains."""
    work = tmp_path / "work"
    git("clone", "-q", "--depth", "2", served.url, work)
    assert _count(git, work) == 2
    git("fetch", "-q", "--unshallow", "origin", cwd=work)
    assert not (work / ".git" / "shallow").exists()
    assert _count(git, work) == _count(git, served.source, "main")
    got = git("rev-list", "--objects", "origin/main", cwd=work).stdout
    expected = git("rev-list", "--objects", "main", cwd=served.source).stdout
    assert sorted(ln[:40] for ln in got.splitlines()) == sorted(ln[:40] for ln in expected.splitlines())
    git.fsck(work)


def test_clone_shallow_since(git: Git, served: Served, tmp_path: Path) -> None:
    """``clone --shallow-since`` at c4's date: stock git's boundary is M5 and c4.

    The walk keeps c6, M5 and c4 (c3 is older). A commit with any parent cut becomes shallow
    as a whole, so M5 (parent c3 cut) and c4 (parent c2 cut) are both listed; and since M5's
    parents are then hidden, ``git log`` shows only c6 and M5.
    """
    src = served.source
    c4, m5 = git.rev_parse(src, "main~2"), git.rev_parse(src, "main~1")
    since = git("log", "-1", "--format=%ct", c4, cwd=src).stdout.strip()
    work, oracle = _both(git, served, tmp_path, f"--shallow-since=@{since}")
    assert shallow_commits(work) == {c4, m5}
    assert set(git("rev-list", "HEAD", cwd=work).stdout.split()) == {m5, git.rev_parse(src, "main")}
    git.fsck(work)
    _same_as_stock(git, work, oracle)


def test_clone_shallow_exclude(git: Git, served: Served, tmp_path: Path) -> None:
    """``clone --shallow-exclude=light`` stops right above the tagged commit c2.

    The server resolves the ref name itself (``deepen-not``); c3 and c4, whose parent c2 is
    excluded, become the boundary.
    """
    src = served.source
    work, oracle = _both(git, served, tmp_path, "--shallow-exclude=light")
    expected = set(git("rev-list", "main", "^light", cwd=src).stdout.split())
    assert set(git("rev-list", "HEAD", cwd=work).stdout.split()) == expected
    assert shallow_commits(work) == {git.rev_parse(src, "main~2"), git.rev_parse(src, "main~1^2")}
    git.fsck(work)
    _same_as_stock(git, work, oracle)


def test_fetch_depth_after_upstream_moved(git: Git, served: Served, tmp_path: Path) -> None:
    """``fetch --depth=2`` in a depth-1 clone after two new upstream commits.

    The client sends its shallow commit and haves together with ``deepen 2``; it must end up
    with exactly the two newest commits below the new tip, like stock git gives.
    """
    work, oracle = _both(git, served, tmp_path, "--depth", "1")
    new = _move_upstream(git, served, 2)
    for repo in (work, oracle):
        git("fetch", "-q", "--depth=2", "origin", cwd=repo)
    assert git.rev_parse(work, "origin/main") == new[-1]
    assert _first_parents(git, work, "origin/main") == 2
    assert new[0] in shallow_commits(work)
    git.fsck(work)
    _same_as_stock(git, work, oracle)


def test_plain_fetch_in_shallow_clone_after_upstream_moved(git: Git, served: Served, tmp_path: Path) -> None:
    """A plain ``git fetch`` in a shallow clone gets the new commits and keeps the old boundary."""
    work, oracle = _both(git, served, tmp_path, "--depth", "1")
    old_tip = git.rev_parse(served.source, "main")
    new = _move_upstream(git, served, 2)
    for repo in (work, oracle):
        git("fetch", "-q", "origin", cwd=repo)
    assert git.rev_parse(work, "origin/main") == new[-1]
    assert _first_parents(git, work, "origin/main") == 3
    assert shallow_commits(work) == {old_tip}
    git.fsck(work)
    _same_as_stock(git, work, oracle)


def test_push_from_shallow_clone(git: Git, served: Served, tmp_path: Path) -> None:
    """A commit made on top of a depth-1 clone can be pushed; the server stays complete."""
    work = tmp_path / "work"
    git("clone", "-q", "--depth", "1", served.url, work)
    old_tip = git.rev_parse(work, "HEAD")
    tip = git.commit_file(work, "from-shallow.txt", "pushed from a shallow clone\n", "shallow push")
    git("push", "-q", "origin", "main", cwd=work)
    assert git.ls_remote(served.url, patterns=["refs/heads/main"]) == {"refs/heads/main": tip}

    full = tmp_path / "full"
    git("clone", "-q", "--no-single-branch", served.url, full)
    assert not shallow_commits(full)
    git.fsck(full)
    assert git.rev_parse(full, "HEAD^") == old_tip
    assert _count(git, full) == _count(git, served.source, "main") + 1
    assert (full / "from-shallow.txt").read_text() == "pushed from a shallow clone\n"


def test_depth_with_blob_filter(git: Git, served: Served, tmp_path: Path) -> None:
    """``clone --depth 1 --filter=blob:none``: one commit, its trees, no blobs; checkout fetches them."""
    work, oracle = _both(git, served, tmp_path, "--depth", "1", "--filter=blob:none", "--no-checkout")
    tip = git.rev_parse(served.source, "main")
    assert shallow_commits(work) == {tip}
    present, missing = objects_present_and_missing(git, work, "HEAD")
    types = object_types(git, work, present)
    assert sorted(t for t in types.values() if t == "commit") == ["commit"]
    assert "blob" not in types.values(), "blob:none clone holds blobs"
    expected_blobs = set(git("rev-list", "--objects", "--no-walk", tip, cwd=served.source).stdout.split())
    assert missing, "no blob is missing: the filter was ignored"
    assert missing <= expected_blobs
    assert (present, missing) == objects_present_and_missing(git, oracle, "HEAD")
    assert shallow_commits(oracle) == {tip}

    git("checkout", "-q", "main", cwd=work)
    assert (work / "data" / "big.txt").read_text() == big_text(2)
    assert (work / "src" / "hello.txt").read_text() == "Hello, world! How are you?\n"
    assert git("status", "--porcelain", cwd=work).stdout == ""
