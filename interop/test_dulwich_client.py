"""dulwich (pure-Python git, as a client) against the server: clone, fetch, push, branch deletes.

Every repository starts as the sample history pushed by stock git (``served``). dulwich then
clones it, checks refs and bytes, commits and pushes; stock git clones the result and checks it
(``git fsck --strict``, the ref, ``git log``, the file bytes). dulwich speaks both protocol
versions for fetching, so the clone and fetch tests run with ``proto`` 0 and 2 (the same version
is used by the checking git); dulwich pushes with v0 like git.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from interop.conftest import (
    IDENTITY,
    Git,
    Served,
    server_refs,
    source_refs,
    verify_pushed,
)

dulwich = pytest.importorskip("dulwich", reason="dulwich is not installed (pip install dulwich)")

from dulwich import porcelain  # noqa: E402
from dulwich.client import AbstractHttpGitClient, get_transport_and_path  # noqa: E402
from dulwich.objects import Blob, Commit, Tag, Tree  # noqa: E402
from dulwich.repo import Repo  # noqa: E402

AUTHOR = f"{IDENTITY['GIT_AUTHOR_NAME']} <{IDENTITY['GIT_AUTHOR_EMAIL']}>".encode()
COMMITTER = f"{IDENTITY['GIT_COMMITTER_NAME']} <{IDENTITY['GIT_COMMITTER_EMAIL']}>".encode()
WHEN = 1_720_000_000
#: Bytes that are not plain ASCII and end without a newline, so any re-encoding shows.
PAYLOAD = "dulwich was here: caf\u00e9 \u2713\n\tno newline at the end".encode()


@pytest.fixture(autouse=True)
def _isolated_home(git_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """dulwich reads ~/.gitconfig and proxy variables: give it the suite's empty HOME, no proxy."""
    monkeypatch.setenv("HOME", str(git_home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(git_home / ".config"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")


@pytest.fixture
def packs_received(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytearray]]:
    """Every pack an HTTP fetch by dulwich receives, byte for byte, as the server sent it."""
    received: list[bytearray] = []
    original = AbstractHttpGitClient.fetch_pack

    def tee(self, path, determine_wants, graph_walker, pack_data, *args, **kwargs):  # type: ignore[no-untyped-def]
        buf = bytearray()
        received.append(buf)

        def write(data: bytes) -> object:
            buf.extend(data)
            return pack_data(data)

        return original(self, path, determine_wants, graph_walker, write, *args, **kwargs)

    monkeypatch.setattr(AbstractHttpGitClient, "fetch_pack", tee)
    yield received


def pack_object_count(pack: bytes) -> int:
    """The object count of a pack's header (after checking signature and version)."""
    assert len(pack) >= 32, f"pack is only {len(pack)} bytes"
    signature, version, count = struct.unpack(">4sII", pack[:12])
    assert signature == b"PACK" and version in (2, 3), pack[:12]
    return int(count)


@pytest.fixture
def dulwich_clone() -> Iterator[Callable[[str, Path, int], Repo]]:
    """Factory: ``dulwich_clone(url, dest, proto)`` clones with porcelain; repos closed after."""
    repos: list[Repo] = []

    def clone(url: str, dest: Path, proto: int) -> Repo:
        errors = io.BytesIO()
        repo = porcelain.clone(url, str(dest), errstream=errors, protocol_version=proto)
        assert isinstance(repo, Repo), errors.getvalue()
        repos.append(repo)
        return repo

    yield clone
    for repo in repos:
        repo.close()


def blob_at(repo: Repo, commit: bytes, path: str) -> bytes:
    """The bytes of ``path`` in ``commit``, read from dulwich's object store."""
    tree = repo[repo[commit].tree]
    _mode, sha = tree.lookup_path(repo.object_store.__getitem__, path.encode())
    blob = repo[sha]
    assert isinstance(blob, Blob)
    return blob.as_raw_string()


def push(repo: Repo, url: str, *refspecs: str, **kwargs: object) -> None:
    """porcelain.push that fails the test on any transport error or per-ref rejection."""
    errors = io.BytesIO()
    result = porcelain.push(repo, url, list(refspecs), outstream=io.BytesIO(), errstream=errors, **kwargs)
    rejected = {ref: why for ref, why in (result.ref_status or {}).items() if why is not None}
    assert not rejected, f"push {refspecs} rejected: {rejected}\n{errors.getvalue().decode(errors='replace')}"


def commit_on_top(repo: Repo, parent: bytes, files: dict[str, bytes], message: str, when: int) -> bytes:
    """Write a commit of ``files`` over ``parent``'s tree straight into the object store."""
    store = repo.object_store

    def put(tree: Tree, parts: list[str], data: bytes) -> bytes:
        name = parts[0].encode()
        if len(parts) == 1:
            blob = Blob.from_string(data)
            store.add_object(blob)
            tree.add(name, 0o100644, blob.id)
        else:
            sub = Tree()
            if name in tree:
                existing = store[tree[name][1]]
                assert isinstance(existing, Tree)
                sub = existing.copy()
            tree.add(name, 0o040000, put(sub, parts[1:], data))
        store.add_object(tree)
        return tree.id

    base = repo[parent]
    assert isinstance(base, Commit)
    root = store[base.tree].copy()
    assert isinstance(root, Tree)
    for path, data in files.items():
        put(root, path.split("/"), data)
    commit = Commit()
    commit.tree = root.id
    commit.parents = [parent]
    commit.author, commit.committer = AUTHOR, COMMITTER
    commit.author_time = commit.commit_time = when
    commit.author_timezone = commit.commit_timezone = 0
    commit.message = message.encode()
    store.add_object(commit)
    return commit.id


def test_dulwich_clone_commit_push(
    git: Git, served: Served, proto: int, tmp_path: Path, dulwich_clone: Callable[[str, Path, int], Repo]
) -> None:
    """dulwich clones the history git pushed, sees every ref and byte, commits and pushes main."""
    expected = source_refs(git, served.source)
    repo = dulwich_clone(served.url, tmp_path / "dulwich", proto)

    # Refs: HEAD -> main, one remote-tracking branch per server branch, every tag unchanged
    # (annotated ones as tag objects, not peeled).
    assert repo.refs.get_symrefs().get(b"HEAD") == b"refs/heads/main"
    assert repo.refs[b"refs/heads/main"].decode() == expected["refs/heads/main"]
    for name, oid in expected.items():
        local = name.replace("refs/heads/", "refs/remotes/origin/", 1)
        assert repo.refs[local.encode()].decode() == oid, f"{local} after a dulwich clone"
    tag = repo[expected["refs/tags/v1.0"].encode()]
    assert isinstance(tag, Tag) and tag.name == b"v1.0" and tag.message == b"Version 1.0\n"
    assert tag.object[1].decode() == git.rev_parse(served.source, "v1.0^{commit}")

    # Bytes: in the object store and in the checked-out work tree.
    head = repo.refs[b"refs/heads/main"]
    for path in ("src/hello.txt", "data/big.txt", "tools/run.sh"):
        want = (served.source / path).read_bytes()
        assert blob_at(repo, head, path) == want, path
        assert (tmp_path / "dulwich" / path).read_bytes() == want, path

    # A commit made with dulwich's porcelain, pushed back with it.
    work = tmp_path / "dulwich"
    (work / "dulwich.txt").write_bytes(PAYLOAD)
    (work / "src" / "hello.txt").write_bytes(b"Hello from dulwich!\n")
    porcelain.add(repo, paths=[str(work / "dulwich.txt"), str(work / "src" / "hello.txt")])
    message = "dulwich: add dulwich.txt, edit hello"
    new = porcelain.commit(
        repo,
        message=message.encode(),
        author=AUTHOR,
        committer=COMMITTER,
        author_timestamp=WHEN,
        author_timezone=0,
        commit_timestamp=WHEN,
        commit_timezone=0,
    ).decode()
    assert new != expected["refs/heads/main"]
    push(repo, served.url, "refs/heads/main")

    expected["refs/heads/main"] = new
    assert server_refs(git, served.url) == expected
    verify_pushed(
        git,
        served.url,
        tmp_path / "check",
        branch="main",
        commit=new,
        files={
            "dulwich.txt": PAYLOAD,
            "src/hello.txt": b"Hello from dulwich!\n",
            "data/big.txt": (served.source / "data/big.txt").read_bytes(),
        },
        message=message,
        parent=git.rev_parse(served.source, "main"),
    )


def test_dulwich_incremental_fetch(
    git: Git,
    served: Served,
    proto: int,
    tmp_path: Path,
    packs_received: list[bytearray],
    dulwich_clone: Callable[[str, Path, int], Repo],
) -> None:
    """After stock git pushes on top, a dulwich fetch gets just the new objects, and they are right."""
    repo = dulwich_clone(served.url, tmp_path / "dulwich", proto)
    assert len(packs_received) == 1 and pack_object_count(packs_received[0]) > 20
    before = source_refs(git, served.source)

    # Another client (stock git) adds a commit to main and a new branch.
    new_main = git.commit_file(served.source, "src/hello.txt", "Hello again, from git\n", "git: edit hello")
    git("push", "-q", served.url, "main", "main:refs/heads/extra", cwd=served.source)
    listed = git("rev-list", "--objects", new_main, "--not", *before.values(), cwd=served.source)
    missing_ids = {line.split(" ", 1)[0] for line in listed.stdout.splitlines()}
    # The commit, the root tree, the src/ tree and the new src/hello.txt blob.
    assert len(missing_ids) == 4, listed.stdout

    client, path = get_transport_and_path(served.url)
    result = client.fetch(path, repo, protocol_version=proto)
    assert len(packs_received) == 2, "dulwich fetch received no pack"
    assert result.refs is not None
    assert result.refs[b"refs/heads/main"].decode() == new_main
    assert result.refs[b"refs/heads/extra"].decode() == new_main
    for name, oid in before.items():
        if name != "refs/heads/main":
            assert result.refs[name.encode()].decode() == oid, name
    # Incremental: the pack carries the four new objects, nothing the clone already had.
    assert pack_object_count(packs_received[1]) == len(missing_ids)
    for oid in missing_ids:
        assert oid.encode() in repo.object_store, f"{oid} missing after the fetch"
    assert blob_at(repo, new_main.encode(), "src/hello.txt") == b"Hello again, from git\n"

    # What dulwich stored is sound by git's own standard.
    repo.refs[b"refs/remotes/origin/main"] = new_main.encode()
    git.fsck(tmp_path / "dulwich")

    # A second fetch with nothing new transfers no pack (or an empty one).
    client.fetch(path, repo, protocol_version=proto)
    assert all(not pack or pack_object_count(pack) == 0 for pack in packs_received[2:])


@pytest.mark.parametrize("proto", [2])
def test_dulwich_push_new_branch_tag_and_delete(
    git: Git, served: Served, tmp_path: Path, dulwich_clone: Callable[[str, Path, int], Repo]
) -> None:
    """dulwich pushes a new branch and an annotated tag, then deletes that branch and another."""
    expected = source_refs(git, served.source)
    repo = dulwich_clone(served.url, tmp_path / "dulwich", 2)
    feature = expected["refs/heads/feature"].encode()
    files = {"topic/notes.txt": b"made by dulwich\n", "src/feature.txt": b"feature flag: off\n"}
    message = "dulwich: topic branch\n\nWritten straight into the object store.\n"
    topic = commit_on_top(repo, feature, files, message, WHEN + 60)
    repo.refs[b"refs/heads/topic"] = topic

    tag = Tag()
    tag.object = (Commit, topic)
    tag.name = b"dulwich-1"
    tag.tagger = COMMITTER
    tag.tag_time = WHEN + 120
    tag.tag_timezone = 0
    tag.message = b"A tag made by dulwich\n"
    repo.object_store.add_object(tag)
    repo.refs[b"refs/tags/dulwich-1"] = tag.id

    push(repo, served.url, "refs/heads/topic", "refs/tags/dulwich-1")
    expected["refs/heads/topic"] = topic.decode()
    expected["refs/tags/dulwich-1"] = tag.id.decode()
    assert server_refs(git, served.url) == expected
    assert git.ls_remote(served.url)["refs/tags/dulwich-1^{}"] == topic.decode()
    check = verify_pushed(
        git,
        served.url,
        tmp_path / "check",
        branch="topic",
        commit=topic.decode(),
        files={**files, "src/colors.txt": (served.source / "src/colors.txt").read_bytes()},
        message=message,
        parent=feature.decode(),
    )
    shown = git("cat-file", "tag", "refs/tags/dulwich-1", cwd=check).stdout
    assert shown.startswith(f"object {topic.decode()}\ntype commit\ntag dulwich-1\n"), shown

    # Delete the branch dulwich pushed and one stock git pushed, in one push.
    push(repo, served.url, ":refs/heads/topic", ":refs/heads/release/1.x")
    del expected["refs/heads/topic"], expected["refs/heads/release/1.x"]
    assert server_refs(git, served.url) == expected
    fresh = tmp_path / "fresh"
    git("clone", "-q", "--mirror", served.url, fresh)
    git.fsck(fresh)
    assert git.refs(fresh) == expected
