"""Partial clones (``--filter``) with the real git client, over protocol v0 and v2.

Each test checks, without triggering lazy fetches (``rev-list --missing=print``), which objects a
filtered clone holds and which it lacks, compares that with what stock git's own upload-pack
hands out for the same filter (a ``file://`` URL to the source), then checks out commits so that
git has to fetch the missing objects by id from the server, and checks the files.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from interop.conftest import (
    Git,
    Served,
    big_text,
    object_types,
    objects_present_and_missing,
    stock_upload_pack_url,
)


def _filtered_clones(git: Git, served: Served, tmp_path: Path, spec: str) -> tuple[Path, Path]:
    """``clone --no-checkout --filter=spec`` from the server and from stock upload-pack."""
    work, oracle = tmp_path / "work", tmp_path / "oracle"
    result = git("clone", "--no-checkout", f"--filter={spec}", served.url, work)
    assert "filtering not recognized" not in result.stderr, result.describe()
    git("clone", "-q", "--no-checkout", f"--filter={spec}", stock_upload_pack_url(git, served.source), oracle)
    return work, oracle


def _partial_fsck(git: Git, repo: Path) -> None:
    """``git fsck --strict`` of a partial clone: promised (missing) objects are fine, nothing else."""
    result = git("fsck", "--strict", "--no-progress", "--no-dangling", cwd=repo, check=False)
    assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), (
        result.describe()
    )


def _by_type(git: Git, repo: Path, present: set[str]) -> dict[str, set[str]]:
    kinds: dict[str, set[str]] = {}
    for oid, kind in object_types(git, repo, present).items():
        kinds.setdefault(kind, set()).add(oid)
    return kinds


def _blob_id(git: Git, repo: Path, content: str) -> str:
    return git("hash-object", "--stdin", cwd=repo, input=content).stdout.strip()


def _check_out_everything(git: Git, served: Served, work: Path) -> None:
    """Check out main, then c8 (via the tag v0.9), then feature: each needs lazy fetches."""
    git("checkout", "-q", "main", cwd=work)
    assert (work / "data" / "big.txt").read_text() == big_text(2)
    assert (work / "src" / "feature.txt").read_text() == "feature flag: on\n"
    git("checkout", "-q", "v0.9", cwd=work)
    assert (work / "src" / "colors.txt").read_text() == "red\ngreen\nblue\ncyan\n"
    assert (work / "data" / "big.txt").read_text() == big_text(1)
    assert not (work / "src" / "feature.txt").exists()
    git("checkout", "-q", "origin/feature", cwd=work)
    assert (work / "src" / "feature.txt").read_text() == "feature flag: on\nlevel: 2\n"
    assert (work / "data" / "big.txt").read_text() == big_text(0)
    assert git("status", "--porcelain", cwd=work).stdout == ""
    for mine, theirs in (("main", "main"), ("v0.9", "v0.9"), ("origin/feature", "feature")):
        assert git.rev_parse(work, f"{mine}^{{tree}}") == git.rev_parse(served.source, f"{theirs}^{{tree}}")


def _no_blobs_but_the_tagged_one(git: Git, served: Served, kinds: dict[str, set[str]]) -> None:
    """No blob arrived except the one the tag ``blob-tag`` points at directly, which stock git
    sends whatever the filter (the tag names it as an object to send, not as part of a tree)."""
    assert kinds.get("blob", set()) <= {git.rev_parse(served.source, "blob-tag^{}")}


def test_blob_none_then_checkout_of_other_commits(git: Git, served: Served, tmp_path: Path) -> None:
    """``--filter=blob:none``: commits, trees and tags, no blobs; checkouts fetch them lazily."""
    work, oracle = _filtered_clones(git, served, tmp_path, "blob:none")
    present, missing = objects_present_and_missing(git, work)
    kinds = _by_type(git, work, present)
    _no_blobs_but_the_tagged_one(git, served, kinds)
    assert missing, "the partial clone holds every blob: the filter was ignored"
    everything = object_types(git, served.source, git.all_objects(served.source))
    assert missing == {oid for oid, kind in everything.items() if kind == "blob"} - kinds.get("blob", set())
    assert len(kinds["commit"]) == int(git("rev-list", "--all", "--count", cwd=served.source).stdout)
    assert (present, missing) == objects_present_and_missing(git, oracle)
    _partial_fsck(git, work)

    _check_out_everything(git, served, work)
    _partial_fsck(git, work)


def test_blob_limit(git: Git, served: Served, tmp_path: Path) -> None:
    """``--filter=blob:limit=1k`` leaves out exactly the three versions of data/big.txt (160 KB)."""
    work, oracle = _filtered_clones(git, served, tmp_path, "blob:limit=1k")
    present, missing = objects_present_and_missing(git, work)
    big = {_blob_id(git, served.source, big_text(v)) for v in (0, 1, 2)}
    assert missing == big
    small = {
        _blob_id(git, served.source, text)
        for text in ("Hello, world!\n", "red\ngreen\nblue\ncyan\n", "feature flag: on\nlevel: 2\n")
    }
    assert small <= present
    assert (present, missing) == objects_present_and_missing(git, oracle)
    _partial_fsck(git, work)
    _check_out_everything(git, served, work)


@pytest.mark.parametrize("depth", [0, 1])
def test_tree_depth(git: Git, served: Served, tmp_path: Path, depth: int) -> None:
    """``--filter=tree:0`` leaves out every tree and blob; ``tree:1`` keeps only root trees.

    Whatever the filter, the commits and the tag objects of the wanted refs arrive.
    """
    work, oracle = _filtered_clones(git, served, tmp_path, f"tree:{depth}")
    present, missing = objects_present_and_missing(git, work)
    kinds = _by_type(git, work, present)
    commits = set(git("rev-list", "--all", cwd=served.source).stdout.split())
    root_trees = {git.rev_parse(served.source, f"{c}^{{tree}}") for c in commits}
    assert kinds["commit"] == commits
    _no_blobs_but_the_tagged_one(git, served, kinds)
    if depth == 0:
        assert "tree" not in kinds
        assert root_trees <= missing
    else:
        assert kinds["tree"] == root_trees
    assert (present, missing) == objects_present_and_missing(git, oracle)
    _partial_fsck(git, work)
    _check_out_everything(git, served, work)


def test_object_type_commit(git: Git, served: Served, tmp_path: Path) -> None:
    """``--filter=object:type=commit`` (git >= 2.32): no trees or blobs arrive."""
    work, oracle = _filtered_clones(git, served, tmp_path, "object:type=commit")
    present, missing = objects_present_and_missing(git, work)
    kinds = _by_type(git, work, present)
    assert kinds["commit"] == set(git("rev-list", "--all", cwd=served.source).stdout.split())
    assert "tree" not in kinds
    _no_blobs_but_the_tagged_one(git, served, kinds)
    assert missing
    assert (present, missing) == objects_present_and_missing(git, oracle)
    _partial_fsck(git, work)
    _check_out_everything(git, served, work)


def test_combined_filter(git: Git, served: Served, tmp_path: Path) -> None:
    """``combine:blob:none+tree:2``: no blobs, and no tree two levels below the root.

    A commit adding ``deep/er/est/file.txt`` gives trees at depths 1 (``deep``), 2 (``deep/er``)
    and 3; only the first may arrive, alongside ``src``, ``data`` and ``tools``.
    """
    src = served.source
    git.commit_file(src, "deep/er/est/file.txt", "deep\n", "deep tree", date=1_800_000_000)
    git("push", "-q", served.url, "main", cwd=src)
    work, oracle = _filtered_clones(git, served, tmp_path, "combine:blob:none+tree:2")
    present, missing = objects_present_and_missing(git, work)
    kinds = _by_type(git, work, present)
    _no_blobs_but_the_tagged_one(git, served, kinds)
    assert git.rev_parse(src, "main:deep") in kinds["tree"]
    assert git.rev_parse(src, "main:src") in kinds["tree"]
    assert git.rev_parse(src, "main:deep/er") in missing
    assert (present, missing) == objects_present_and_missing(git, oracle)
    _partial_fsck(git, work)
    git("checkout", "-q", "main", cwd=work)
    assert (work / "deep" / "er" / "est" / "file.txt").read_text() == "deep\n"
    assert (work / "data" / "big.txt").read_text() == big_text(2)
