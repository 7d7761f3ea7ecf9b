"""Reused and cached packs never outlive the refs they were made for, checked with the real git
client (also against stock git's server, in reference mode).

govc answers a full clone with the pack a push brought in, as it is, and keeps generated packs
for identical requests; both must give way as soon as a ref update changes the answer.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from interop.conftest import ALL_REFSPECS, Git, Served, server_refs, source_refs

TRACE = {"GIT_TRACE_PACKET": "1"}


def test_clone_after_a_push_has_the_new_history(git: Git, served: Served, tmp_path: Path) -> None:
    """Clone (the reused pack), push a commit and move a tag, clone again: the second clone has
    the new state, complete and clean, and nothing of the first answer."""
    first = tmp_path / "first.git"
    git("clone", "-q", "--mirror", served.url, first)
    assert git.refs(first, "refs/heads/", "refs/tags/") == source_refs(git, served.source)

    git.commit_file(served.source, "src/after.txt", "pushed after the first clone\n", "c9: after")
    git("tag", "-f", "-a", "v1.0", "-m", "Version 1.0, moved", "main", cwd=served.source)
    git("push", "-q", "--force", served.url, *ALL_REFSPECS, cwd=served.source)
    assert server_refs(git, served.url) == source_refs(git, served.source)

    second = tmp_path / "second.git"
    git("clone", "-q", "--mirror", served.url, second)
    assert git.refs(second, "refs/heads/", "refs/tags/") == source_refs(git, served.source)
    assert git.all_objects(second) == git.all_objects(served.source)
    git.fsck(second)


@pytest.mark.parametrize("proto", [2])
def test_the_same_fetch_after_a_tag_push_brings_the_tag_at_once(
    git: Git, served: Served, tmp_path: Path
) -> None:
    """Two clients two commits behind send the same fetch, before and after an annotated tag of
    the middle commit is pushed. git does not want such a tag by name (its target is no tip):
    the answer must carry it through include-tag. The request is the same both times, so a
    stale pack would lack the tag and git would need a second round: there must be one."""
    behind = tmp_path / "behind.git"
    git("clone", "-q", "--bare", served.url, behind)
    git("config", "remote.origin.fetch", "+refs/heads/*:refs/remotes/origin/*", cwd=behind)
    clients = [tmp_path / f"client-{i}.git" for i in range(2)]
    for client in clients:
        git("clone", "-q", "--bare", behind, client)
        git("config", "remote.origin.url", served.url, cwd=client)
        git("config", "remote.origin.fetch", "+refs/heads/*:refs/remotes/origin/*", cwd=client)

    middle = git.commit_file(served.source, "src/new.txt", "one more\n", "c10: one more")
    new = git.commit_file(served.source, "src/new.txt", "and another\n", "c11: another")
    git("push", "-q", served.url, "main", cwd=served.source)

    first = git("fetch", "origin", cwd=clients[0], env=TRACE)
    assert first.stderr.count("fetch> command=fetch") == 1, first.describe()
    assert git.rev_parse(clients[0], "refs/remotes/origin/main") == new

    git("tag", "-a", "v2.0", "-m", "Version 2.0", middle, cwd=served.source)
    git("push", "-q", served.url, "refs/tags/v2.0", cwd=served.source)
    tag = git.rev_parse(served.source, "refs/tags/v2.0")

    second = git("fetch", "origin", cwd=clients[1], env=TRACE)
    assert second.stderr.count("fetch> command=fetch") == 1, second.describe()
    assert f"want {tag}" not in second.stderr  # the tag arrives by include-tag alone
    assert git.rev_parse(clients[1], "refs/remotes/origin/main") == new
    assert git.rev_parse(clients[1], "refs/tags/v2.0") == tag
    git.fsck(clients[1])


def test_a_full_clone_after_a_branch_is_deleted(git: Git, served: Served, tmp_path: Path) -> None:
    """Deleting a branch changes what a mirror clone wants; the answer must still be complete
    and hold no more than the remaining refs reach."""
    git("push", "-q", served.url, ":refs/heads/feature", cwd=served.source)
    mirror = tmp_path / "mirror.git"
    git("clone", "-q", "--mirror", served.url, mirror)
    expected = {n: o for n, o in source_refs(git, served.source).items() if n != "refs/heads/feature"}
    assert git.refs(mirror, "refs/heads/", "refs/tags/") == expected
    git.fsck(mirror)
