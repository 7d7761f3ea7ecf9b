"""Pushes with the real git client: deletes, forced updates, atomic pushes, big packs, bad names.

git 2.39 pushes with protocol v0 whatever ``protocol.version`` says; the ``proto`` parameter
still varies the ``ls-remote``/clone/fetch calls that check the result.
"""

from __future__ import annotations

import hashlib
import random
import re
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from interop.conftest import Git, Served, http_request

ZERO_ID = "0" * 40


def _clone(git: Git, url: str, dest: Path) -> Path:
    git("clone", "-q", url, dest)
    return dest


def test_delete_branch_by_push(git: Git, served: Served, tmp_path: Path) -> None:
    """``push origin :branch`` and ``push --delete`` remove branches; others see them go.

    Also checks that the server does not lose the objects still reachable from other refs and
    that a second clone prunes its remote-tracking branches accordingly.
    """
    other = _clone(git, served.url, tmp_path / "other")
    git("push", "-q", served.url, ":feature", cwd=served.source)
    git("push", "-q", "--delete", served.url, "release/1.x", cwd=served.source)
    remote = git.ls_remote(served.url)
    assert "refs/heads/feature" not in remote
    assert "refs/heads/release/1.x" not in remote
    assert remote["refs/heads/main"] == git.rev_parse(served.source, "main")
    assert remote["refs/tags/v0.9"] == git.rev_parse(served.source, "refs/tags/v0.9")

    result = git("fetch", "--prune", "origin", cwd=other)
    assert "[deleted]" in result.output, result.describe()
    assert set(git.refs(other, "refs/remotes/origin/")) == {
        "refs/remotes/origin/HEAD",
        "refs/remotes/origin/main",
    }
    fresh = _clone(git, served.url, tmp_path / "fresh")
    git.fsck(fresh)


def test_delete_tags_by_push(git: Git, served: Served) -> None:
    """Annotated and lightweight tags can be deleted by push, peeled entries included."""
    git("push", "-q", served.url, ":refs/tags/v0.9", cwd=served.source)
    git("push", "-q", "--delete", served.url, "refs/tags/light", cwd=served.source)
    remote = git.ls_remote(served.url)
    assert not {"refs/tags/v0.9", "refs/tags/v0.9^{}", "refs/tags/light"} & set(remote)
    assert remote["refs/tags/v1.0^{}"] == git.rev_parse(served.source, "v1.0^{commit}")


def test_non_fast_forward_is_rejected_unless_forced(git: Git, served: Served, tmp_path: Path) -> None:
    """A rewrite of main is refused as non-fast-forward, then accepted with ``--force``.

    The refusal relies on the server advertising main's current id; the forced update must
    then really move the server's main to the rewritten commit and stay fsck-clean.
    """
    work = _clone(git, served.url, tmp_path / "work")
    base = git.rev_parse(work, "HEAD")
    first = git.commit_file(work, "a.txt", "first\n", "first")
    git("push", "-q", "origin", "main", cwd=work)
    git("reset", "-q", "--hard", base, cwd=work)
    rewrite = git.commit_file(work, "a.txt", "rewritten\n", "rewrite")

    refused = git.fails("push", "origin", "main", cwd=work)
    assert "[rejected]" in refused.stderr, refused.describe()
    assert "non-fast-forward" in refused.stderr, refused.describe()
    assert git.ls_remote(served.url, patterns=["refs/heads/main"]) == {"refs/heads/main": first}

    git("push", "-q", "--force", "origin", "main", cwd=work)
    assert git.ls_remote(served.url, patterns=["refs/heads/main"]) == {"refs/heads/main": rewrite}
    check = _clone(git, served.url, tmp_path / "check")
    assert git.rev_parse(check, "HEAD") == rewrite
    git.fsck(check)


def _install_pre_push_hook(repo: Path, script: str) -> None:
    hook = repo / ".git" / "hooks" / "pre-push"
    hook.parent.mkdir(parents=True, exist_ok=True)
    hook.write_text("#!/bin/sh\nunset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE GIT_PREFIX\n" + script)
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def _stale_push_setup(git: Git, served: Served, tmp_path: Path) -> tuple[Path, str, str, str]:
    """Clone ``a`` with new commits on main and feature, and a pre-push hook in ``a`` that
    makes clone ``b`` push feature first, after ``a`` has read the server's refs.

    So ``a``'s push reaches the server carrying an old value for feature that is no longer
    true: only the server can notice, which is the point. Returns (a, old main, a's main,
    b's feature).
    """
    a = _clone(git, served.url, tmp_path / "a")
    b = _clone(git, served.url, tmp_path / "b")
    old_main = git.rev_parse(a, "main")
    git("checkout", "-q", "feature", cwd=a)
    git.commit_file(a, "src/feature.txt", "a's feature\n", "a: feature")
    git("checkout", "-q", "main", cwd=a)
    a_main = git.commit_file(a, "src/main.txt", "a's main\n", "a: main")
    git("checkout", "-q", "feature", cwd=b)
    b_feature = git.commit_file(b, "src/other.txt", "b's feature\n", "b: feature")
    log = tmp_path / "hook.log"
    _install_pre_push_hook(a, f'git -C "{b}" push origin feature >"{log}" 2>&1\n')
    return a, old_main, a_main, b_feature


def test_atomic_push_with_a_stale_ref_changes_nothing(git: Git, served: Served, tmp_path: Path) -> None:
    """``push --atomic`` of two refs where one moved on the server meanwhile updates neither.

    First an atomic push that is valid succeeds (the server must advertise ``atomic``). Then
    a pre-push hook moves feature on the server between the client's ref discovery and its
    push request, so the server itself must detect the stale old value and, the push being
    atomic, refuse main too.
    """
    work = _clone(git, served.url, tmp_path / "ok")
    git("branch", "-q", "-f", "feature", "origin/feature", cwd=work)
    m = git.commit_file(work, "m.txt", "m\n", "m")
    git("checkout", "-q", "feature", cwd=work)
    f = git.commit_file(work, "f.txt", "f\n", "f")
    git("push", "-q", "--atomic", "origin", "main", "feature", cwd=work)
    remote = git.ls_remote(served.url, "--heads")
    assert (remote["refs/heads/main"], remote["refs/heads/feature"]) == (m, f)

    stale = tmp_path / "stale"
    stale.mkdir()
    a, old_main, a_main, b_feature = _stale_push_setup(git, served, stale)
    assert old_main == m
    result = git.fails("push", "--atomic", "origin", "main", "feature", cwd=a)
    for ref in ("main", "feature"):
        rejected = rf"\[remote rejected\] +{ref} -> {ref}"
        assert re.search(rejected, result.stderr), result.describe()
    remote = git.ls_remote(served.url, "--heads")
    assert remote["refs/heads/feature"] == b_feature, (stale / "hook.log").read_text()
    assert remote["refs/heads/main"] == old_main, result.describe()
    assert old_main != a_main
    check = _clone(git, served.url, tmp_path / "check")
    git.fsck(check)


def test_non_atomic_push_with_a_stale_ref_updates_the_others(
    git: Git, served: Served, tmp_path: Path
) -> None:
    """Without ``--atomic``, a stale ref is refused on its own and the other ref still moves.

    This is the counterpart of the atomic test: each command gets its own ``ok``/``ng``.
    """
    a, _old_main, a_main, b_feature = _stale_push_setup(git, served, tmp_path)
    result = git.fails("push", "origin", "main", "feature", cwd=a)
    assert re.search(r"\[remote rejected\] +feature -> feature", result.stderr), result.describe()
    remote = git.ls_remote(served.url, "--heads")
    assert remote["refs/heads/feature"] == b_feature, (tmp_path / "hook.log").read_text()
    assert remote["refs/heads/main"] == a_main, result.describe()


def test_large_push_with_chunked_upload(git: Git, new_repo: Callable[..., str], tmp_path: Path) -> None:
    """A 3 MiB push with ``http.postBuffer=65536`` arrives intact.

    With the pack bigger than the post buffer, git streams the request with
    ``Transfer-Encoding: chunked`` (the trace proves it did), so the server must read a body
    of unknown length to its end.
    """
    url = new_repo()
    work = tmp_path / "work"
    git("init", "-q", work)
    rng = random.Random(4242)
    for i in range(3):
        git.commit_file(work, f"blobs/random-{i}.bin", rng.randbytes(1 << 20), f"blob {i}")
    git.commit_file(work, "blobs/random-0.bin", rng.randbytes(1 << 20), "rewrite blob 0")

    trace = tmp_path / "trace.txt"
    git(
        "-c",
        "http.postBuffer=65536",
        "push",
        "-q",
        url,
        "main",
        cwd=work,
        env={"GIT_TRACE_CURL": str(trace), "GIT_TRACE_CURL_NO_DATA": "1"},
    )
    text = trace.read_text("utf-8", "replace")
    assert re.search(r"Send header: Transfer-Encoding: chunked", text, re.I), "not chunked"

    mirror = tmp_path / "mirror.git"
    git("clone", "-q", "--mirror", url, mirror)
    assert git.refs(mirror) == git.refs(work)
    assert git.all_objects(mirror) == git.all_objects(work)
    git.fsck(mirror)


def test_push_options_are_accepted(git: Git, served: Served, tmp_path: Path) -> None:
    """``git push -o`` works: the server advertises ``push-options`` and reads them.

    Without the capability git refuses up front ("the receiving end does not support push
    options"); with it, the options travel between the commands and the pack.
    """
    work = _clone(git, served.url, tmp_path / "work")
    tip = git.commit_file(work, "ci.txt", "skip\n", "skip ci")
    git("push", "-q", "-o", "ci.skip", "-o", "note=hello world", "origin", "main", cwd=work)
    assert git.ls_remote(served.url, patterns=["refs/heads/main"]) == {"refs/heads/main": tip}


def test_push_of_an_invalid_ref_name_is_rejected(git: Git, served: Served) -> None:
    """``refs/foo`` passes git's client-side check but is no valid ref; the server refuses it."""
    result = git.fails("push", served.url, "HEAD:refs/foo", cwd=served.source)
    assert re.search(r"\[remote rejected\] +HEAD -> refs/foo", result.stderr), result.describe()
    remote = git.ls_remote(served.url)
    assert "refs/foo" not in remote
    assert remote["refs/heads/main"] == git.rev_parse(served.source, "main")


def _pkt(payload: bytes) -> bytes:
    return b"%04x" % (len(payload) + 4) + payload


def _empty_pack() -> bytes:
    header = b"PACK" + (2).to_bytes(4, "big") + (0).to_bytes(4, "big")
    return header + hashlib.sha1(header).digest()


def _pkt_lines(data: bytes) -> list[bytes]:
    lines, pos = [], 0
    while pos + 4 <= len(data):
        size = int(data[pos : pos + 4], 16)
        lines.append(data[pos + 4 : pos + size] if size > 4 else b"")
        pos += max(size, 4)
    return lines


@pytest.mark.parametrize("proto", [pytest.param(0, id="v0")], indirect=True)
@pytest.mark.parametrize(
    "refname",
    [
        "refs/heads/a..b",
        "refs/heads/x.lock",
        "refs/heads/../../config",
        "refs/heads/sp ace",
        "refs/heads/tail/",
        "HEAD",
    ],
)
def test_receive_pack_refuses_names_git_would_never_send(git: Git, served: Served, refname: str) -> None:
    """A hand-made receive-pack request for a malformed ref name gets ``ng`` for it.

    git's client will not send these names, so this speaks the wire protocol directly; the
    server must still validate them (``../`` in particular must not reach any file path).
    """
    main = git.rev_parse(served.source, "main")
    command = f"{ZERO_ID} {main} {refname}\0report-status\n".encode()
    body = _pkt(command) + b"0000" + _empty_pack()
    status, answer = http_request(
        "POST",
        f"{served.url}/git-receive-pack",
        body,
        {
            "Content-Type": "application/x-git-receive-pack-request",
            "Accept": "application/x-git-receive-pack-result",
        },
    )
    assert status == 200, (status, answer[:500])
    report = _pkt_lines(answer)
    assert any(line.startswith(f"ng {refname} ".encode()) for line in report), report
    assert not any(line.startswith(f"ok {refname}".encode()) for line in report), report
    remote = git.ls_remote(served.url)
    if refname != "HEAD":
        assert refname not in remote
    assert remote["refs/heads/main"] == main
    assert git.remote_head_symref(served.url) == "refs/heads/main"
