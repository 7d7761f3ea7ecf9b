"""``govc clone / push / pull`` against a real govc server running in-process, checked on the server
through ``repo.refs`` and in the work trees with the real git binary."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import govc
from tests.govc.test_worktree_cli import govc as run
from tests.govc.test_worktree_cli import real_git, work, write
from tests.helpers import have_git

pytestmark = pytest.mark.skipif(not have_git(), reason="needs the git binary")
__all__ = ["work"]  # the fixture, re-exported for pytest


@pytest.fixture
def served() -> Iterator[tuple[govc.Repository, str]]:
    repo = govc.Repository("infra")
    with repo.transaction("main", author="srv <srv@example.com>") as tx:
        tx.write("lb.conf", "backends = 2\n")
        tx.commit("Initial config")
    repo.set_head("refs/heads/main")
    server = govc.Server({"infra": repo})
    url = server.serve_in_thread()
    try:
        yield repo, f"{url}/infra.git"
    finally:
        server.stop()


def test_clone_commit_push_pull(work: Path, served: tuple[govc.Repository, str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    repo, url = served
    run("clone", url, "infra-a")
    a = work / "infra-a"
    assert (a / "lb.conf").read_text() == "backends = 2\n"
    monkeypatch.chdir(a)
    assert json.loads(run("status", "--json").output)["branch"] == "main"
    write(a, "lb.conf", "backends = 4\n")
    run("add", "lb.conf")
    run("commit", "-m", "more backends")
    run("reality", "create", "canary")
    run("push", "--realities")
    local = real_git(a, "rev-parse", "HEAD").strip().encode()
    assert repo.refs.get("refs/heads/main") == local
    assert repo.refs.get("refs/realities/canary") == local
    assert repo.time_travel(10**10).read("lb.conf") == b"backends = 4\n"

    # Someone else changes the server; pull fast-forwards.
    with repo.transaction("main", author="srv <srv@example.com>") as tx:
        tx.write("new.txt", "from the server\n")
        tx.commit("server side")
    run("pull", "-q")
    assert (a / "new.txt").read_text() == "from the server\n"
    assert real_git(a, "rev-parse", "HEAD").strip().encode() == repo.refs.get("refs/heads/main")

    # Diverged: pull makes a merge commit, push sends it back.
    with repo.transaction("main", author="srv <srv@example.com>") as tx:
        tx.write("new.txt", "server again\n")
        tx.commit("server again")
    write(a, "lb.conf", "backends = 8\n")
    run("add", ".")
    run("commit", "-m", "eight")
    run("pull", "origin", "main")
    head = json.loads(run("log", "--json", "-n", "1").output)[0]
    assert len(head["parents"]) == 2
    assert (a / "new.txt").read_text() == "server again\n" and (a / "lb.conf").read_text() == "backends = 8\n"
    assert not (a / ".git" / "refs" / "govc-pull").exists()
    run("push", url, "main")  # a URL works as well as a remote name
    assert repo.refs.get("refs/heads/main") == head["id"].encode()
    assert real_git(a, "status", "--porcelain") == ""

    # A push the server refuses (not a fast-forward) fails with git's reason.
    monkeypatch.chdir(work)
    run("clone", "-q", url, "infra-b")
    monkeypatch.chdir(work / "infra-b")
    write(work / "infra-b", "b.txt", "b\n")
    run("add", ".")
    run("commit", "-m", "b")
    with repo.transaction("main", author="srv <srv@example.com>") as tx:
        tx.write("c.txt", "c\n")
        tx.commit("c")
    failed = run("push", code=1)
    assert failed.output.startswith("Error: git push failed")
    assert run("clone", "http://127.0.0.1:9/nothing.git", "x", code=1).output.startswith("Error: git clone")


def test_ephemeral_reality_is_created_in_the_servers_memory(
    work: Path, served: tuple[govc.Repository, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, url = served
    run("clone", url, "infra-e")
    monkeypatch.chdir(work / "infra-e")
    out = run("reality", "create", "try-1", "--ephemeral").output
    assert "Created ephemeral reality try-1 on origin" in out
    ref = "refs/realities/try-1"
    assert repo.refs.get(ref) == repo.refs.get("refs/heads/main")
    assert ref in repo.ephemeral_refs  # lives in the server's memory only
    assert real_git(work / "infra-e", "ls-remote", "origin", ref).strip().endswith(ref)
    again = run("reality", "create", "try-1", "--ephemeral", code=1).output
    assert again.startswith("Error: origin refused the reality") and "exists" in again
