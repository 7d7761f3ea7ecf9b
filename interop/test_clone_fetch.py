"""Clone, fetch and ls-remote with the real git client, over protocol v0 and v2.

Every test compares what the server hands out with the repository the data came from, using
git's own plumbing on both sides, so a server that loses, alters or mislabels anything fails.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from interop.conftest import Git, Served, big_text


def _pack_files(repo: Path) -> set[str]:
    return {p.name for p in (repo / ".git" / "objects" / "pack").glob("*")}


def _upload_pack_posts(trace: str) -> int:
    return len(re.findall(r"Send header: POST \S*/git-upload-pack HTTP", trace))


def test_push_history_then_clone_it_back(git: Git, served: Served, tmp_path: Path) -> None:
    """A full round trip: what was pushed is exactly what a clone gets back.

    The server must store every object of a branchy history (merges, annotated and nested tags,
    a tag of a blob, deltas) and advertise every ref with the right id, and a clone must
    reproduce the source's refs and object set and pass ``fsck --strict``.
    """
    source_refs = git.refs(served.source)
    mirror = tmp_path / "mirror.git"
    git("clone", "-q", "--mirror", served.url, mirror)
    assert git.refs(mirror) == source_refs
    assert git.all_objects(mirror) == git.all_objects(served.source)
    git.fsck(mirror)

    work = tmp_path / "work"
    git("clone", "-q", served.url, work)
    git.fsck(work)
    assert git.all_objects(work) == git.all_objects(served.source)
    assert git("symbolic-ref", "HEAD", cwd=work).stdout.strip() == "refs/heads/main"
    assert git.rev_parse(work, "HEAD") == source_refs["refs/heads/main"]
    remote_branches = {
        name.replace("refs/remotes/origin/", "refs/heads/", 1): oid
        for name, oid in git.refs(work, "refs/remotes/origin/").items()
        if name != "refs/remotes/origin/HEAD"
    }
    assert remote_branches == git.refs(served.source, "refs/heads/")
    assert git.refs(work, "refs/tags/") == git.refs(served.source, "refs/tags/")
    assert (work / "data" / "big.txt").read_text() == big_text(2)
    assert git("diff", "--quiet", "HEAD", cwd=work, check=False).returncode == 0
    mode = git("ls-files", "-s", "tools/run.sh", cwd=work).stdout.split()[0]
    assert mode == "100755"


def test_requested_protocol_version_is_the_one_spoken(
    git: Git, served: Served, tmp_path: Path, proto: int
) -> None:
    """The server answers in the protocol version the client asked for.

    git silently falls back to v0 when a server ignores ``Git-Protocol: version=2``, which
    would make every "v2" case of this suite test v0 again; the packet trace shows which
    version the server really spoke.
    """
    trace = tmp_path / "packet.txt"
    git("ls-remote", served.url, env={"GIT_TRACE_PACKET": str(trace)})
    spoke_v2 = re.search(r"git< version 2$", trace.read_text("utf-8", "replace"), re.M)
    assert bool(spoke_v2) == (proto == 2), trace.read_text()[:4000]


def test_ls_remote_lists_every_ref_and_peels_tags(git: Git, served: Served) -> None:
    """``git ls-remote`` shows each ref once with its id, and every annotated tag's peeled id.

    The expected listing is ``git show-ref -d`` of the source repository, which is stock git's
    own idea of peeling (through nested tags, and to a blob for a tag of a blob).
    """
    remote = git.ls_remote(served.url)
    expected = git.show_ref_d(served.source)
    assert remote.pop("HEAD") == expected["refs/heads/main"]
    assert remote == expected
    assert remote["refs/tags/v1.0-nested^{}"] == git.rev_parse(served.source, "v1.0^{commit}")
    assert remote["refs/tags/blob-tag^{}"] == git.rev_parse(served.source, "HEAD:README.md")
    assert git.remote_head_symref(served.url) == "refs/heads/main"


@pytest.mark.parametrize(
    ("options", "patterns", "expected_names"),
    [
        (["--heads"], [], {"refs/heads/main", "refs/heads/feature", "refs/heads/release/1.x"}),
        # A pattern matches the tail of a name; "refs/tags/v1.0^{}" does not end in "/v1.0".
        (["--tags"], ["v1.0"], {"refs/tags/v1.0"}),
        (
            ["--tags"],
            ["v1.0*"],
            {"refs/tags/v1.0", "refs/tags/v1.0^{}", "refs/tags/v1.0-nested", "refs/tags/v1.0-nested^{}"},
        ),
        (["--heads"], ["feature"], {"refs/heads/feature"}),
        ([], ["refs/heads/release/*"], {"refs/heads/release/1.x"}),
        ([], ["no-such-ref"], set()),
    ],
    ids=["heads", "tag-name", "tag-glob", "head-name", "glob", "no-match"],
)
def test_ls_remote_with_patterns(
    git: Git,
    served: Served,
    options: list[str],
    patterns: list[str],
    expected_names: set[str],
) -> None:
    """``ls-remote`` limited by ``--heads``/``--tags`` and ref patterns lists just those refs.

    Under v2 the client turns the flags into ``ref-prefix`` arguments of ``ls-refs``; the ids
    must still be the source's.
    """
    listed = git.ls_remote(served.url, *options, patterns=patterns)
    assert set(listed) == expected_names
    source = git.show_ref_d(served.source)
    for name, oid in listed.items():
        assert oid == source[name], name


def test_incremental_fetch_gets_new_commits(git: Git, served: Served, tmp_path: Path) -> None:
    """After another clone pushes, ``git fetch`` brings exactly the new objects, intact.

    The new commit edits the big file, so the server may send a thin pack whose delta base the
    fetching clone already has; ``transfer.fsckObjects`` and ``fsck --strict`` check the result.
    """
    a, b = tmp_path / "a", tmp_path / "b"
    git("clone", "-q", served.url, a)
    git("clone", "-q", served.url, b)
    base = git.rev_parse(b, "HEAD")
    (b / "data" / "big.txt").write_text(big_text(3))
    git("commit", "-q", "-a", "-m", "b: edit big", cwd=b)
    new_tip = git.commit_file(b, "src/news.txt", "news from b\n", "b: add news")
    git("tag", "-a", "v2.0", "-m", "Version 2.0", cwd=b)
    git("push", "-q", "origin", "main", "v2.0", cwd=b)

    listing = git("rev-list", "--objects", "main", "v2.0", "--not", base, cwd=b).stdout
    new_ids = [line.split(" ", 1)[0] for line in listing.splitlines()]
    # 2 commits, 2 root trees, the data/ and src/ trees, 2 blobs, the tag object
    assert len(new_ids) == 9, listing
    for oid in new_ids:
        assert git("cat-file", "-e", oid, cwd=a, check=False).returncode != 0

    git("fetch", "-q", "--tags", "origin", cwd=a)
    assert git.rev_parse(a, "refs/remotes/origin/main") == new_tip
    assert git.rev_parse(a, "refs/tags/v2.0") == git.rev_parse(b, "refs/tags/v2.0")
    for oid in new_ids:
        git("cat-file", "-e", oid, cwd=a)
    git.fsck(a)
    assert git.all_objects(a) == git.all_objects(b)


def test_noop_fetch_changes_nothing(git: Git, served: Served, tmp_path: Path) -> None:
    """A fetch when nothing changed succeeds and leaves refs and packs exactly as they were."""
    work = tmp_path / "work"
    git("clone", "-q", served.url, work)
    refs_before, packs_before = git.refs(work), _pack_files(work)
    result = git("fetch", "origin", cwd=work)
    assert result.returncode == 0
    assert git.refs(work) == refs_before
    assert _pack_files(work) == packs_before
    assert "->" not in result.output, result.describe()


def test_clone_of_empty_repository_then_first_push(
    git: Git, new_repo: Callable[..., str], tmp_path: Path, proto: int
) -> None:
    """Cloning an empty repository works (with git's warning), and its first push fills it.

    Under v2 the server advertises its unborn HEAD, so the clone's HEAD follows the server's
    ``main`` even though this client's own default branch is ``trunk``; under v0 there is no
    way to say that, and git keeps its own default.
    """
    url = new_repo()
    empty = tmp_path / "empty"
    result = git("-c", "init.defaultBranch=trunk", "clone", url, empty)
    assert "You appear to have cloned an empty repository" in result.stderr, result.describe()
    assert git.refs(empty) == {}
    head = git("symbolic-ref", "HEAD", cwd=empty).stdout.strip()
    assert head == ("refs/heads/main" if proto == 2 else "refs/heads/trunk")
    if head != "refs/heads/main":
        git("checkout", "-q", "-b", "main", cwd=empty)

    first = git.commit_file(empty, "hello.txt", "first\n", "first commit")
    git("push", "-q", "origin", "main", cwd=empty)
    assert git.ls_remote(url) == {"HEAD": first, "refs/heads/main": first}
    assert git.remote_head_symref(url) == "refs/heads/main"

    again = tmp_path / "again"
    git("clone", "-q", url, again)
    assert git.rev_parse(again, "HEAD") == first
    assert (again / "hello.txt").read_text() == "first\n"
    git.fsck(again)


def test_fetch_with_many_haves_negotiates_in_rounds(
    git: Git, served: Served, tmp_path: Path, proto: int
) -> None:
    """A client with 100 local-only commits fetches over several negotiation rounds.

    The first rounds end without a common commit (``NAK``), so the server must answer
    ``have`` lines statelessly across separate HTTP requests; later request bodies exceed
    1 KB, so git gzips them (``Content-Encoding: gzip``) and the server must inflate them. The
    trace proves the client really did both, so the test cannot pass vacuously.
    """
    a, b = tmp_path / "a", tmp_path / "b"
    git("clone", "-q", served.url, a)
    git("clone", "-q", served.url, b)
    git.fast_commits(a, 100)
    new_tip = git.commit_file(b, "src/server-side.txt", "moved on\n", "b: advance main")
    git("push", "-q", "origin", "main", cwd=b)

    trace = tmp_path / "trace.txt"
    git("fetch", "origin", cwd=a, env={"GIT_TRACE_CURL": str(trace), "GIT_TRACE_CURL_NO_DATA": "1"})
    text = trace.read_text("utf-8", "replace")
    posts = _upload_pack_posts(text)
    # v2: one ls-refs plus at least two fetch rounds; v0: at least two fetch rounds.
    assert posts >= (3 if proto == 2 else 2), f"{posts} upload-pack POSTs"
    assert re.search(r"Send header: Content-Encoding: gzip", text, re.I), "no gzip request"

    assert git.rev_parse(a, "refs/remotes/origin/main") == new_tip
    git("cat-file", "-e", f"{new_tip}:src/server-side.txt", cwd=a)
    git.fsck(a)
    merged = git("merge-base", "main", "origin/main", cwd=a).stdout.strip()
    assert merged == git.rev_parse(b, "HEAD~1")


def test_shallow_clone_then_unshallow(git: Git, served: Served, tmp_path: Path) -> None:
    """``clone --depth 1`` gets one commit and a shallow boundary; ``--unshallow`` the rest."""
    work = tmp_path / "work"
    git("clone", "-q", "--depth", "1", "--no-single-branch", served.url, work)
    assert git("rev-list", "--count", "HEAD", cwd=work).stdout.strip() == "1"
    shallow = set((work / ".git" / "shallow").read_text().split())
    assert git.rev_parse(work, "HEAD") in shallow
    git.fsck(work)

    git("fetch", "-q", "--unshallow", "--tags", "origin", cwd=work)
    assert not (work / ".git" / "shallow").exists()
    assert (
        git("rev-list", "--count", "HEAD", cwd=work).stdout.strip()
        == git("rev-list", "--count", "HEAD", cwd=served.source).stdout.strip()
    )
    git.fsck(work)
    assert git.all_objects(work) == git.all_objects(served.source)


@pytest.mark.parametrize("proto", [pytest.param(2, id="v2")], indirect=True)
def test_partial_clone_without_blobs_fetches_them_lazily(git: Git, served: Served, tmp_path: Path) -> None:
    """``clone --filter=blob:none`` omits blobs, and git fetches them later when needed.

    A server that ignores the filter would send every blob (git then warns "filtering not
    recognized by server"); one that cannot serve single objects by id would break checkout.
    """
    work = tmp_path / "work"
    result = git("clone", "--no-checkout", "--filter=blob:none", served.url, work)
    assert "filtering not recognized" not in result.stderr, result.describe()
    missing = [
        line
        for line in git("rev-list", "--all", "--objects", "--missing=print", cwd=work).stdout.splitlines()
        if line.startswith("?")
    ]
    assert missing, "the partial clone holds every blob: the filter was ignored"
    git("checkout", "-q", "main", cwd=work)
    assert (work / "data" / "big.txt").read_text() == big_text(2)
    assert (work / "README.md").exists()


def test_clone_pack_contains_deltas(git: Git, served: Served, tmp_path: Path) -> None:
    """The pack a clone receives stores the big file's versions as deltas.

    Not a correctness requirement of the protocol, but govc's design is to splice the deltas
    it received instead of re-sending whole objects; stock git does the same.
    """
    work = tmp_path / "work"
    git("clone", "-q", "--bare", served.url, work)
    idx = list((work / "objects" / "pack").glob("*.idx"))
    assert len(idx) == 1
    listing = git("verify-pack", "-v", idx[0], cwd=work).stdout
    deltas = [ln for ln in listing.splitlines() if re.match(r"[0-9a-f]{40} \w+ .* [0-9a-f]{40}$", ln)]
    assert deltas, listing
