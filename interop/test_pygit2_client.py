"""libgit2 (through pygit2) against the server: clone, commit, push, fetch, new refs and deletes.

libgit2 is the git implementation inside many tools and hosting services; it speaks protocol v0
over its own HTTP transport. The repository starts as the sample history pushed by stock git;
stock git checks everything libgit2 pushed (``git fsck --strict``, refs, ``git log``, bytes).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from interop.conftest import IDENTITY, Git, Served, server_refs, source_refs, verify_pushed

pygit2 = pytest.importorskip("pygit2", reason="pygit2 (libgit2) is not installed: pip install pygit2")

#: The checking git's protocol version does not matter here: libgit2 speaks v0 whatever it is.
pytestmark = pytest.mark.parametrize("proto", [2])

WHEN = 1_730_000_000
PAYLOAD = "libgit2 was here: na\u00efve \u03bb\r\nCRLF kept, no newline at the end".encode()


@pytest.fixture(autouse=True)
def _isolated_config(git_home: Path) -> Iterator[None]:
    """Keep libgit2 from reading the user's or the system's git configuration."""
    levels = (pygit2.enums.ConfigLevel.SYSTEM, pygit2.enums.ConfigLevel.XDG, pygit2.enums.ConfigLevel.GLOBAL)
    saved = {level: pygit2.settings.search_path[level] for level in levels}
    for level in levels:
        pygit2.settings.search_path[level] = str(git_home)
    yield
    for level, value in saved.items():
        pygit2.settings.search_path[level] = value


class Recorder(pygit2.RemoteCallbacks):  # type: ignore[misc]
    """Remembers what the server said about each pushed ref (None = accepted)."""

    def __init__(self) -> None:
        super().__init__()
        self.statuses: dict[str, str | None] = {}

    def push_update_reference(self, refname: str, message: str | None) -> None:
        self.statuses[refname] = message


def author() -> pygit2.Signature:
    return pygit2.Signature(IDENTITY["GIT_AUTHOR_NAME"], IDENTITY["GIT_AUTHOR_EMAIL"], WHEN, 0)


def committer(offset: int = 0) -> pygit2.Signature:
    return pygit2.Signature(IDENTITY["GIT_COMMITTER_NAME"], IDENTITY["GIT_COMMITTER_EMAIL"], WHEN + offset, 0)


def push(repo: pygit2.Repository, *specs: str) -> None:
    """Push ``specs`` to origin; fail on a transport error or any ref the server did not accept."""
    recorder = Recorder()
    repo.remotes["origin"].push(list(specs), callbacks=recorder)
    wanted = {spec.split(":")[-1].lstrip("+") for spec in specs}
    assert set(recorder.statuses) == wanted, f"statuses reported for {recorder.statuses}, pushed {specs}"
    rejected = {ref: why for ref, why in recorder.statuses.items() if why is not None}
    assert not rejected, f"the server rejected {rejected}"


def commit_files(repo: pygit2.Repository, files: dict[str, bytes], message: str, ref: str = "HEAD") -> str:
    """Write ``files`` in the work tree, stage them, commit on ``ref`` and return the id."""
    workdir = Path(repo.workdir)
    for path, data in files.items():
        (workdir / path).parent.mkdir(parents=True, exist_ok=True)
        (workdir / path).write_bytes(data)
        repo.index.add(path)
    repo.index.write()
    tree = repo.index.write_tree()
    parent = repo.head.target
    return str(repo.create_commit(ref, author(), committer(), message, tree, [parent]))


def test_pygit2_clone_commit_push(git: Git, served: Served, tmp_path: Path) -> None:
    """libgit2 clones the history git pushed, sees refs and bytes, commits and pushes main."""
    expected = source_refs(git, served.source)
    repo = pygit2.clone_repository(served.url, str(tmp_path / "libgit2"))

    assert repo.head.name == "refs/heads/main"
    assert str(repo.head.target) == expected["refs/heads/main"]
    for name, oid in expected.items():
        local = name.replace("refs/heads/", "refs/remotes/origin/", 1)
        assert str(repo.references[local].target) == oid, f"{local} after a libgit2 clone"
    tag = repo[expected["refs/tags/v1.0"]]
    assert isinstance(tag, pygit2.Tag) and tag.name == "v1.0" and tag.message == "Version 1.0\n"
    assert str(tag.peel(pygit2.Commit).id) == git.rev_parse(served.source, "v1.0^{commit}")
    nested = repo[expected["refs/tags/v1.0-nested"]]
    assert isinstance(nested, pygit2.Tag) and str(nested.target) == expected["refs/tags/v1.0"]
    for path in ("src/hello.txt", "data/big.txt", "tools/run.sh"):
        want = (served.source / path).read_bytes()
        assert repo.revparse_single(f"HEAD:{path}").data == want, path
        assert (tmp_path / "libgit2" / path).read_bytes() == want, path
    assert (
        repo.revparse_single("HEAD^{tree}")["tools"]["run.sh"].filemode
        == pygit2.enums.FileMode.BLOB_EXECUTABLE
    )

    files = {"libgit2.bin": PAYLOAD, "data/big.txt": (served.source / "data/big.txt").read_bytes() + b"+1\n"}
    message = "libgit2: add libgit2.bin, append to big"
    new = commit_files(repo, files, message)
    push(repo, "refs/heads/main:refs/heads/main")

    expected["refs/heads/main"] = new
    assert server_refs(git, served.url) == expected
    verify_pushed(
        git,
        served.url,
        tmp_path / "check",
        branch="main",
        commit=new,
        files={**files, "src/hello.txt": (served.source / "src/hello.txt").read_bytes()},
        message=message,
        parent=git.rev_parse(served.source, "main"),
    )


def test_pygit2_fetch_then_push_branch_tag_and_delete(git: Git, served: Served, tmp_path: Path) -> None:
    """libgit2 fetches what git pushed since its clone, pushes a branch and a tag, deletes a branch."""
    expected = source_refs(git, served.source)
    repo = pygit2.clone_repository(served.url, str(tmp_path / "libgit2"))

    new_main = git.commit_file(served.source, "src/colors.txt", "black\nwhite\n", "git: recolor")
    git("push", "-q", served.url, "main", cwd=served.source)
    stats = repo.remotes["origin"].fetch()
    assert stats.received_objects == 4, "an incremental fetch carries the 4 new objects, nothing more"
    assert str(repo.references["refs/remotes/origin/main"].target) == new_main
    assert repo.revparse_single("origin/main:src/colors.txt").data == b"black\nwhite\n"

    repo.checkout(repo.references["refs/remotes/origin/main"])  # detached at the new main
    repo.references.create("refs/heads/topic", new_main)
    repo.checkout("refs/heads/topic")
    files = {"topic/libgit2.txt": PAYLOAD}
    message = "libgit2: topic\n\nA commit on a new branch.\n"
    topic = commit_files(repo, files, message)
    tag = str(
        repo.create_tag("libgit2-1", topic, pygit2.enums.ObjectType.COMMIT, committer(60), "libgit2 tag\n")
    )
    push(repo, "refs/heads/topic:refs/heads/topic", "refs/tags/libgit2-1:refs/tags/libgit2-1")

    expected |= {"refs/heads/main": new_main, "refs/heads/topic": topic, "refs/tags/libgit2-1": tag}
    assert server_refs(git, served.url) == expected
    assert git.ls_remote(served.url)["refs/tags/libgit2-1^{}"] == topic
    check = verify_pushed(
        git,
        served.url,
        tmp_path / "check",
        branch="topic",
        commit=topic,
        files={**files, "src/colors.txt": b"black\nwhite\n"},
        message=message,
        parent=new_main,
    )
    shown = git("cat-file", "tag", "refs/tags/libgit2-1", cwd=check).stdout
    assert shown.startswith(f"object {topic}\ntype commit\ntag libgit2-1\n"), shown

    push(repo, ":refs/heads/topic", ":refs/heads/feature")
    del expected["refs/heads/topic"], expected["refs/heads/feature"]
    assert server_refs(git, served.url) == expected
    fresh = tmp_path / "fresh"
    git("clone", "-q", "--mirror", served.url, fresh)
    git.fsck(fresh)
    assert git.refs(fresh) == expected
