"""Push features with the real git client: push options, atomic pushes, deletions, mirrors,
hundreds of refs at once, partial failure.

git 2.39 always pushes with protocol v0; these tests run once (``proto`` fixed to 0) and read
results back with ``ls-remote``/clone.
"""

from __future__ import annotations

import re
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from interop.conftest import IDENTITY, Git, Served, dates, server_refs

pytestmark = pytest.mark.parametrize("proto", [pytest.param(0, id="v0")], indirect=True)

UPSTREAM_EPOCH = 1_800_000_000


def _clone(git: Git, url: str, dest: Path) -> Path:
    git("clone", "-q", url, dest)
    return dest


def _remote_listing(git: Git, url: str) -> dict[str, str]:
    """``ls-remote`` without HEAD: every ref and peeled tag, to compare with ``show-ref -d``."""
    return {name: oid for name, oid in git.ls_remote(url).items() if name != "HEAD"}


def test_push_options_with_report_status_v2(git: Git, served: Served, tmp_path: Path) -> None:
    """``push -o key=value -o ci.skip`` is accepted, and the client asks for report-status-v2.

    git requests ``report-status-v2`` (and sends ``push-options``) only when the server
    advertises them; the trace shows the command line and the options as sent.
    """
    work = _clone(git, served.url, tmp_path / "work")
    tip = git.commit_file(work, "ci.txt", "skip\n", "skip ci")
    trace = tmp_path / "packet.txt"
    git(
        "push", "-q", "-o", "key=value", "-o", "ci.skip", "origin", "main",
        cwd=work, env={"GIT_TRACE_PACKET": str(trace)},
    )  # fmt: skip
    assert git.ls_remote(served.url, patterns=["refs/heads/main"]) == {"refs/heads/main": tip}
    text = trace.read_text("utf-8", "replace")
    # The trace shows the NUL before the capabilities as the two characters "\0".
    command = re.search(rf"> [0-9a-f]{{40}} {tip} refs/heads/main\\0(.*)$", text, re.M)
    assert command, text[-4000:]
    capabilities = command.group(1).split()
    assert "report-status-v2" in capabilities, command.group(0)
    assert "push-options" in capabilities, command.group(0)
    assert re.search(r"> key=value$", text, re.M), text[-4000:]
    assert re.search(r"> ci\.skip$", text, re.M), text[-4000:]


def _install_pre_push_hook(repo: Path, script: str) -> None:
    hook = repo / ".git" / "hooks" / "pre-push"
    hook.parent.mkdir(parents=True, exist_ok=True)
    hook.write_text("#!/bin/sh\nunset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE GIT_PREFIX\n" + script)
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def _racing_clones(git: Git, served: Served, tmp_path: Path) -> tuple[Path, str, str, str]:
    """Clone ``a`` with new commits on main and feature; its pre-push hook makes clone ``b``
    push feature first, after ``a`` has read the server's refs. ``a``'s old value for feature
    is then stale, which only the server can notice. Returns (a, old main, a's main, b's feature).
    """
    a = _clone(git, served.url, tmp_path / "a")
    b = _clone(git, served.url, tmp_path / "b")
    old_main = git.rev_parse(a, "main")
    git("checkout", "-q", "feature", cwd=a)
    git.commit_file(a, "a-feature.txt", "a\n", "a: feature")
    git("checkout", "-q", "main", cwd=a)
    a_main = git.commit_file(a, "a-main.txt", "a\n", "a: main")
    git("checkout", "-q", "feature", cwd=b)
    b_feature = git.commit_file(b, "b-feature.txt", "b\n", "b: feature")
    _install_pre_push_hook(a, f'git -C "{b}" push -q origin feature >"{tmp_path / "hook.log"}" 2>&1\n')
    return a, old_main, a_main, b_feature


def test_atomic_push_with_a_stale_ref_reports_atomic_transaction_failed(
    git: Git, served: Served, tmp_path: Path
) -> None:
    """The server refuses an atomic push as a whole; git prints "(atomic transaction failed)".

    Stock receive-pack checks old values when it commits the one ref transaction, so every
    ref of the push gets the same reason.
    """
    a, old_main, _a_main, b_feature = _racing_clones(git, served, tmp_path)
    result = git.fails("push", "--atomic", "origin", "main", "feature", cwd=a)
    for ref in ("main", "feature"):
        line = rf"! \[remote rejected\] +{ref} -> {ref} \(atomic transaction failed\)"
        assert re.search(line, result.stderr), result.describe()
    remote = git.ls_remote(served.url, "--heads")
    assert remote["refs/heads/main"] == old_main, result.describe()
    assert remote["refs/heads/feature"] == b_feature, (tmp_path / "hook.log").read_text()


def test_atomic_push_refused_by_the_client(git: Git, served: Served, tmp_path: Path) -> None:
    """With a non-fast-forward known up front, git sends nothing and names the other ref
    "(atomic push failed)"; this needs the server to advertise ``atomic`` at all."""
    work = _clone(git, served.url, tmp_path / "work")
    git.commit_file(work, "m.txt", "m\n", "m")
    git("branch", "-q", "-f", "feature", "origin/feature~1", cwd=work)
    result = git.fails("push", "--atomic", "origin", "main", "feature", cwd=work)
    assert re.search(r"! \[rejected\] +feature -> feature \(non-fast-forward\)", result.stderr), (
        result.describe()
    )
    assert re.search(r"! \[rejected\] +main -> main \(atomic push failed\)", result.stderr), result.describe()
    assert server_refs(git, served.url) == git.refs(served.source, "refs/heads/", "refs/tags/")


def test_non_atomic_push_with_a_stale_ref(git: Git, served: Served, tmp_path: Path) -> None:
    """Without ``--atomic`` the stale ref fails alone ("failed to update ref"), main moves."""
    a, _old_main, a_main, b_feature = _racing_clones(git, served, tmp_path)
    result = git.fails("push", "origin", "main", "feature", cwd=a)
    assert re.search(r"! \[remote rejected\] +feature -> feature \(failed to update ref\)", result.stderr), (
        result.describe()
    )
    assert re.search(r"[0-9a-f]+\.\.[0-9a-f]+ +main -> main", result.stderr), result.describe()
    remote = git.ls_remote(served.url, "--heads")
    assert remote["refs/heads/main"] == a_main, result.describe()
    assert remote["refs/heads/feature"] == b_feature, (tmp_path / "hook.log").read_text()


def test_push_with_only_deletions_and_a_rename(git: Git, served: Served) -> None:
    """One push deleting a branch and two tags; another deleting and creating in one go."""
    src = served.source
    git("push", "-q", served.url, ":release/1.x", ":refs/tags/light", ":refs/tags/v0.9", cwd=src)
    expected = git.refs(src, "refs/heads/", "refs/tags/")
    for name in ("refs/heads/release/1.x", "refs/tags/light", "refs/tags/v0.9"):
        del expected[name]
    assert server_refs(git, served.url) == expected

    git("push", "-q", served.url, ":feature", "feature:refs/heads/renamed", cwd=src)
    expected["refs/heads/renamed"] = expected.pop("refs/heads/feature")
    assert server_refs(git, served.url) == expected
    assert "refs/tags/v0.9^{}" not in git.ls_remote(served.url)


def test_push_mirror(git: Git, served: Served, tmp_path: Path) -> None:
    """``push --mirror`` makes the server's refs exactly the local ones.

    The local mirror deletes a branch and a tag, rewinds a branch (a forced update), adds a
    branch, an annotated tag and a ref outside heads and tags; afterwards ``ls-remote``
    (peeled entries included) equals ``show-ref -d`` of the mirror.
    """
    mirror = tmp_path / "mirror.git"
    git("clone", "-q", "--mirror", served.url, mirror)
    src = served.source
    git("update-ref", "-d", "refs/heads/feature", cwd=mirror)
    git("update-ref", "-d", "refs/tags/v0.9", cwd=mirror)
    git("update-ref", "refs/heads/release/1.x", git.rev_parse(src, "main~3"), cwd=mirror)
    git("update-ref", "refs/heads/added", git.rev_parse(src, "feature~1"), cwd=mirror)
    git("update-ref", "refs/custom/thing", git.rev_parse(src, "main~2"), cwd=mirror)
    git(
        "tag", "-a", "mirror-tag", "-m", "made in the mirror", "main~1", cwd=mirror, env=dates(UPSTREAM_EPOCH)
    )
    git("push", "-q", "--mirror", served.url, cwd=mirror)

    assert _remote_listing(git, served.url) == git.show_ref_d(mirror)
    check = tmp_path / "check.git"
    git("clone", "-q", "--mirror", served.url, check)
    assert git.refs(check) == git.refs(mirror)
    git.fsck(check)


def test_one_push_of_300_refs(git: Git, served: Served, new_repo: Callable[..., str], tmp_path: Path) -> None:
    """200 branches, 60 lightweight and 40 annotated tags in one push to an empty repository."""
    src = served.source
    commits = git("rev-list", "--all", cwd=src).stdout.split()
    lines = [f"create refs/heads/bulk/b{i:03d} {commits[i % len(commits)]}\n" for i in range(200)]
    lines += [f"create refs/tags/bulk/lw{i:03d} {commits[i % len(commits)]}\n" for i in range(60)]
    git("update-ref", "--stdin", cwd=src, input="".join(lines))
    who = f"{IDENTITY['GIT_COMMITTER_NAME']} <{IDENTITY['GIT_COMMITTER_EMAIL']}>"
    tags = [
        f"tag bulk/an{i:03d}\nfrom {commits[i % len(commits)]}\ntagger {who} {UPSTREAM_EPOCH + i} +0000\n"
        f"data 8\ntag {i:03d}\n\n"
        for i in range(40)
    ]
    git("fast-import", "--quiet", cwd=src, input="".join(tags))
    local = git.show_ref_d(src)
    bulk = [n for n in local if n.startswith(("refs/heads/bulk/", "refs/tags/bulk/")) and "^" not in n]
    assert len(bulk) == 300

    url = new_repo()
    git("push", "-q", url, "refs/heads/*:refs/heads/*", "refs/tags/*:refs/tags/*", cwd=src)
    assert _remote_listing(git, url) == local
    check = tmp_path / "check.git"
    git("clone", "-q", "--mirror", url, check)
    git.fsck(check)
