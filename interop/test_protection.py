"""Protected branches and namespaces, as a git user meets them: a force-push or a deletion of a
protected branch is refused with a clear reason and changes nothing; unprotected refs still move."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from interop.conftest import Git, Served, Server


@pytest.fixture(autouse=True)
def _govc_only(server: Server) -> None:
    if server.is_reference:
        pytest.skip("govc's protection rules")


@pytest.mark.parametrize("proto", [2], indirect=True)
def test_protected_branch_refuses_force_push_and_delete(git: Git, served: Served, server: Server,
                                                        tmp_path: Path) -> None:
    data = server.log_path.parent / "data"
    name = served.url.removeprefix(server.base_url + "/").removesuffix(".git")
    added = subprocess.run([sys.executable, "-m", "govc", "protect", "add", name, "refs/heads/main",
                            "--data", str(data)], capture_output=True, text=True, check=True)
    rule_id = added.stdout.split()[1].rstrip(":")
    kept = subprocess.run([sys.executable, "-m", "govc", "protect", "add", name, "refs/heads/keep*",
                           "--data", str(data)], capture_output=True, text=True, check=True)
    keep_id = kept.stdout.split()[1].rstrip(":")
    try:
        work = tmp_path / "work"
        git("clone", "-q", served.url, str(work))
        git("push", "-q", "origin", "HEAD:refs/heads/keep-1", cwd=work)  # creating is allowed
        before = git.ls_remote(served.url)
        git("reset", "-q", "--hard", "HEAD~1", cwd=work)
        git.commit_file(work, "rewrite.txt", "x\n", "rewrite history")
        forced = git("push", "--force", "origin", "HEAD:main", cwd=work, check=False)
        assert forced.returncode != 0
        assert "(protected branch: refs/heads/main may not be force-pushed)" in forced.stderr
        deleted = git("push", "origin", ":keep-1", cwd=work, check=False)
        assert "(protected branch: refs/heads/keep-1 may not be deleted)" in deleted.stderr
        assert git.ls_remote(served.url) == before
        git("push", "-q", "--force", "origin", "HEAD:refs/heads/scratch", cwd=work)  # not protected
        git("fetch", "-q", "origin", cwd=work)
        git("reset", "-q", "--hard", "origin/main", cwd=work)
        git.commit_file(work, "ok.txt", "fine\n", "fast-forward")
        git("push", "-q", "origin", "HEAD:main", cwd=work)  # a fast-forward is allowed
    finally:
        for rule in (rule_id, keep_id):
            subprocess.run([sys.executable, "-m", "govc", "protect", "remove", rule, "--data", str(data)],
                           check=True, capture_output=True)
