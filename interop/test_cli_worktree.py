"""The ``govc`` command line as a user runs it: a real subprocess in a temporary directory, with
the files checked after every step; clone, push and pull against the session's server (govc, or
stock git's own server with GOVC_INTEROP_TARGET=http-backend)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from interop.conftest import ALL_REFSPECS, Git, Served, Server


@pytest.fixture
def govc(git_home: Path) -> object:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(HOME=str(git_home), GIT_CONFIG_NOSYSTEM="1", GIT_AUTHOR_NAME="Ops", LC_ALL="C",
               GIT_AUTHOR_EMAIL="ops@example.com", GIT_COMMITTER_NAME="Ops",
               GIT_COMMITTER_EMAIL="ops@example.com", GIT_TERMINAL_PROMPT="0")

    def run(*args: str, cwd: Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "govc", *args], cwd=cwd, env=env, text=True,
                              capture_output=True, timeout=120)
        if ok:
            assert done.returncode == 0, f"govc {' '.join(args)}: {done.stdout}{done.stderr}"
        return done

    return run


def _files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*"))
            if p.is_file() and ".git" not in p.relative_to(root).parts}


@pytest.mark.parametrize("proto", [2], indirect=True)
def test_quick_start_as_a_user_types_it(govc, git: Git, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    work = tmp_path / "infra"
    work.mkdir()
    (work / "README.md").write_text("infra\n")
    govc("init", cwd=work)
    assert _files(work) == {"README.md": "infra\n"}
    govc("branch", "staging", cwd=work)
    govc("branch", "canary", cwd=work)
    listed = govc("branch", cwd=work).stdout.split("\n")
    assert "* main" in listed and "  staging" in listed and "  canary" in listed
    govc("checkout", "staging", cwd=work)
    assert _files(work) == {"README.md": "infra\n"}
    (work / "configs").mkdir()
    (work / "configs" / "lb.conf").write_text("algorithm = least_conn\n")
    govc("add", "configs/", cwd=work)
    govc("commit", "-m", "Test new load balancer config", cwd=work)
    assert _files(work) == {"README.md": "infra\n", "configs/lb.conf": "algorithm = least_conn\n"}
    govc("checkout", "main", cwd=work)
    assert _files(work) == {"README.md": "infra\n"}, "checkout main must restore the previous state"
    govc("checkout", "staging", cwd=work)
    assert _files(work)["configs/lb.conf"] == "algorithm = least_conn\n"
    log = git("log", "--oneline", "staging", cwd=work).stdout
    assert "Test new load balancer config" in log
    git.fsck(work)


@pytest.fixture(params=["govc", "stock-git"])
def target(request: pytest.FixtureRequest, served: Served, git: Git, history: Path) -> Served:
    """The sample history on govc (the session's server) or on stock git's http-backend."""
    if request.param == "govc":
        return served
    stock: Server = request.getfixturevalue("stock_server")
    url = stock.create_repo(f"cli-{request.node.name.replace('[', '-').replace(']', '')}")
    git("push", "-q", url, *ALL_REFSPECS, cwd=history)
    return Served(url, history)


@pytest.mark.parametrize("proto", [2], indirect=True)  # govc's CLI lets git pick the protocol
def test_clone_push_pull_against_the_server(govc, git: Git, target: Served, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    served = target
    first, second = tmp_path / "first", tmp_path / "second"
    govc("clone", "-q", served.url, str(first), cwd=tmp_path)
    govc("clone", "-q", served.url, str(second), cwd=tmp_path)
    assert _files(first) == _files(second) != {}
    (first / "deploy.conf").write_text("replicas = 3\n")
    govc("add", "deploy.conf", cwd=first)
    govc("commit", "-m", "scale out", cwd=first)
    govc("push", "-q", cwd=first)
    assert git.ls_remote(served.url)["refs/heads/main"] == git.rev_parse(first, "HEAD")
    govc("pull", "-q", cwd=second)
    assert (second / "deploy.conf").read_text() == "replicas = 3\n"
    assert git.rev_parse(second, "HEAD") == git.rev_parse(first, "HEAD")
    (first / "deploy.conf").write_text("replicas = 5\n")
    govc("add", "deploy.conf", cwd=first)
    govc("commit", "-m", "more", cwd=first)
    govc("push", "-q", cwd=first)
    (second / "other.conf").write_text("x\n")
    govc("add", "other.conf", cwd=second)
    govc("commit", "-m", "diverge", cwd=second)
    refused = govc("push", "-q", cwd=second, ok=False)
    assert refused.returncode == 1 and "Error:" in refused.stderr + refused.stdout
    govc("pull", "-q", cwd=second)  # a real merge of the two lines of work
    govc("push", "-q", cwd=second)
    assert (second / "deploy.conf").read_text() == "replicas = 5\n"
    server_tip = git.ls_remote(served.url)["refs/heads/main"]
    assert server_tip == git.rev_parse(second, "HEAD")
    parents = git("rev-list", "--parents", "-n", "1", server_tip, cwd=second).stdout.split()
    assert len(parents) == 3, "the pull should have made a two-parent merge"
    git.fsck(second)
