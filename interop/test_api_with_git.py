"""The Python API meets stock git: API commits, realities, watchers and validators, with a govc.Server
started in this process (``serve_in_thread``) and the real git client on the other side.

These tests drive govc's own Python API, so they always run against the in-process govc server,
whichever server ``GOVC_INTEROP_TARGET`` selects for the rest of the suite.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import govc
from govc.trees import MODE_EXEC
from interop.conftest import IDENTITY, Git, dates

OPS = "Ops Team <ops@example.com>"
AUTHOR = f"{IDENTITY['GIT_AUTHOR_NAME']} <{IDENTITY['GIT_AUTHOR_EMAIL']}>"

v0_only = pytest.mark.parametrize("proto", [pytest.param(0, id="v0")], indirect=True)


@dataclass
class Embedded:
    repo: govc.Repository
    server: govc.Server
    base: str

    @property
    def url(self) -> str:
        return f"{self.base}/infra.git"


@pytest.fixture
def embedded() -> Iterator[Embedded]:
    """A memory repository with one API commit on main, served in-process as ``infra``."""
    repo = govc.Repository()
    with repo.transaction("main", author=OPS) as tx:
        tx.write("nginx.conf", "server { listen 443 ssl; }\n")
        tx.write("app.conf", "workers = 4\n")
        tx.write("env/prod/main.tf", 'region = "eu-west-1"\n')
        tx.commit("initial configuration")
    server = govc.Server({"infra": repo})
    base = server.serve_in_thread()
    try:
        yield Embedded(repo, server, base)
    finally:
        server.stop()
        for w in list(repo.watchers):
            w.close(wait=False)


def clone(git: Git, url: str, dest: Path) -> Path:
    git("clone", "-q", url, dest)
    return dest


def commit_change(git: Git, work: Path, path: str, content: str, message: str, when: int) -> str:
    return git.commit_file(work, path, content, message, date=when)


def worktree_files(work: Path) -> dict[str, bytes]:
    return {
        p.relative_to(work).as_posix(): p.read_bytes()
        for p in sorted(work.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(work).parts
    }


def reality_files(reality: govc.Reality) -> dict[str, bytes]:
    return {path: reality.read(path) for path in reality.files()}


# -- API commits read by git -------------------------------------------------------------------


def test_api_commits_clone_clean_with_git(git: Git, embedded: Embedded, tmp_path: Path) -> None:
    repo = embedded.repo
    with repo.transaction("main", author=OPS) as tx:
        tx.write("nginx.conf", "server { listen 443 ssl http2; }\n")
        tx.write("tools/deploy.sh", "#!/bin/sh\nexec true\n", mode=MODE_EXEC)
        tx.write("blob.bin", bytes(range(256)))
        tx.remove("app.conf")
        tx.commit("Update nginx with new SSL cert")
    canary = repo.parallel_reality("canary")
    canary.apply({"canary.conf": "weight = 5\n"}, author=OPS)
    repo.reality("main").apply({"main-only.conf": "m\n"}, author=OPS)
    merge = repo.merge(canary, into="main", author=OPS)
    assert merge.clean and len(merge.commit.parents) == 2

    work = clone(git, embedded.url, tmp_path / "work")
    git.fsck(work)
    main = repo.reality("main")
    assert git.rev_parse(work, "HEAD") == main.head.decode()
    assert worktree_files(work) == reality_files(main)
    parents = git("rev-list", "--parents", "-1", "HEAD", cwd=work).stdout.split()
    assert parents == [merge.commit.oid, *merge.commit.parents]
    first_parent = git("log", "--first-parent", "--format=%H", cwd=work).stdout.split()
    assert first_parent == [c.oid for c in repo.log("main")]
    assert git("log", "-1", "--format=%an <%ae>", "HEAD~1", cwd=work).stdout.strip() == OPS
    assert (work / "tools" / "deploy.sh").stat().st_mode & 0o100
    # git rebuilds the tree from the files it checked out: the same id as govc's.
    git("rm", "-q", "-r", "--cached", ".", cwd=work)
    git("add", "-A", cwd=work)
    assert git("write-tree", cwd=work).stdout.strip() == main.commit.tree


def test_an_open_transaction_is_invisible_to_git(git: Git, embedded: Embedded, tmp_path: Path) -> None:
    repo = embedded.repo
    before = repo.reality("main").head.decode()
    with repo.transaction("main") as tx:
        tx.write("app.conf", "workers = 64\n")
        assert git.ls_remote(embedded.url)["refs/heads/main"] == before
        work = clone(git, embedded.url, tmp_path / "during")
        assert (work / "app.conf").read_text() == "workers = 4\n"
        commit = tx.commit("scale up")
    assert git.ls_remote(embedded.url)["refs/heads/main"] == commit.oid


# -- realities as refs -------------------------------------------------------------------------


def test_realities_are_listed_and_fetchable(git: Git, embedded: Embedded, tmp_path: Path) -> None:
    repo = embedded.repo
    canary = repo.parallel_reality("canary", ephemeral=True)
    canary.apply({"app.conf": "workers = 8\n"})
    cpu, mem = repo.parallel_realities(["optimize-cpu", "optimize-memory"])
    cpu.apply({"app.conf": "workers = 16\n"})
    listed = git.ls_remote(embedded.url)
    assert listed["refs/realities/canary"] == canary.head.decode()
    assert listed["refs/realities/optimize-cpu"] == cpu.head.decode()
    assert listed["refs/realities/optimize-memory"] == repo.reality("main").head.decode()
    assert git.ls_remote(embedded.url, patterns=["refs/realities/*"]).keys() == {
        "refs/realities/canary", "refs/realities/optimize-cpu", "refs/realities/optimize-memory",
    }

    work = clone(git, embedded.url, tmp_path / "work")
    git("fetch", "-q", "origin", "refs/realities/canary", cwd=work)
    assert git.rev_parse(work, "FETCH_HEAD") == canary.head.decode()
    assert git("show", "FETCH_HEAD:app.conf", cwd=work).stdout == "workers = 8\n"
    git("fetch", "-q", "origin", "+refs/realities/*:refs/remotes/realities/*", cwd=work)
    assert git.refs(work, "refs/remotes/realities/") == {
        "refs/remotes/realities/canary": canary.head.decode(),
        "refs/remotes/realities/optimize-cpu": cpu.head.decode(),
        "refs/remotes/realities/optimize-memory": mem.head.decode(),
    }
    git.fsck(work)


def test_a_reality_can_be_cloned(git: Git, embedded: Embedded, tmp_path: Path) -> None:
    canary = embedded.repo.parallel_reality("canary", ephemeral=True)
    canary.apply({"app.conf": "workers = 8\n", "extra": "x\n"})
    mirror = tmp_path / "mirror.git"
    git("clone", "-q", "--mirror", embedded.url, mirror)
    assert git.refs(mirror, "refs/realities/") == {"refs/realities/canary": canary.head.decode()}
    git.fsck(mirror)


@v0_only
def test_a_push_to_a_reality_is_seen_by_the_api(git: Git, embedded: Embedded, tmp_path: Path) -> None:
    repo = embedded.repo
    seen: list[govc.Event] = []
    watcher = repo.watch(seen.append, branches="x")
    work = clone(git, embedded.url, tmp_path / "work")
    pushed = commit_change(git, work, "app.conf", "workers = 32\n", "try 32 workers", 1_800_000_000)
    git("push", "-q", "origin", "HEAD:refs/realities/x", cwd=work)
    x = repo.reality("x")
    assert x.ref == "refs/realities/x"
    assert x.head.decode() == pushed
    assert x.read("app.conf") == b"workers = 32\n"
    assert "x" in {r.name for r in repo.realities()}
    assert repo.reality("main").read("app.conf") == b"workers = 4\n"  # isolated
    watcher.drain()
    assert [(e.branch, e.source, e.new) for e in seen] == [("x", "push", pushed)]

    # The API builds on what git pushed, and git fetches it back.
    on_top = x.apply({"app.conf": "workers = 24\n"}, author=OPS)
    git("fetch", "-q", "origin", "refs/realities/x", cwd=work)
    assert git.rev_parse(work, "FETCH_HEAD") == on_top.oid
    assert git("rev-parse", "FETCH_HEAD^", cwd=work).stdout.strip() == pushed


@v0_only
def test_git_can_delete_a_reality(git: Git, embedded: Embedded, tmp_path: Path) -> None:
    repo = embedded.repo
    repo.parallel_reality("canary", ephemeral=True).apply({"app.conf": "workers = 8\n"})
    work = clone(git, embedded.url, tmp_path / "work")
    git("push", "-q", "origin", "--delete", "refs/realities/canary", cwd=work)
    assert repo.reality("canary").head is None
    assert "refs/realities/canary" not in git.ls_remote(embedded.url)


# -- pushes and watchers -----------------------------------------------------------------------


@v0_only
def test_a_push_is_seen_by_watchers(git: Git, embedded: Embedded, tmp_path: Path) -> None:
    repo = embedded.repo
    seen: list[govc.Event] = []
    tf_only: list[govc.Event] = []
    watcher = repo.watch(seen.append)
    tf_watcher = repo.watch(tf_only.append, paths="*.tf", branches="main")
    old = repo.reality("main").head.decode()
    work = clone(git, embedded.url, tmp_path / "work")
    first = commit_change(git, work, "env/prod/main.tf", 'region = "us-east-1"\n', "move", 1_800_000_000)
    second = commit_change(git, work, "README.md", "docs\n", "docs", 1_800_000_060)
    git("push", "-q", "-o", "ci.skip", "-o", "deploy=canary", "origin", "main", cwd=work)
    watcher.drain()
    tf_watcher.drain()
    assert len(seen) == 1
    event = seen[0]
    assert event.source == "push"
    assert event.branch == "main"
    assert (event.old, event.new) == (old, second)
    assert event.pusher == "127.0.0.1"
    assert event.push_options == ("ci.skip", "deploy=canary")
    assert event.author == AUTHOR
    assert [c.oid for c in event.commits] == [second, first]
    assert sorted(c.path for c in event.changes()) == ["README.md", "env/prod/main.tf"]
    assert [c.path for c in event.changes("*.tf")] == ["env/prod/main.tf"]
    assert [e.new for e in tf_only] == [second]


@v0_only
def test_one_event_per_ref_of_a_push(git: Git, embedded: Embedded, tmp_path: Path) -> None:
    repo = embedded.repo
    seen: list[govc.Event] = []
    watcher = repo.watch(seen.append)
    work = clone(git, embedded.url, tmp_path / "work")
    commit_change(git, work, "a.txt", "a\n", "a", 1_800_000_000)
    git("branch", "feature", cwd=work)
    git("push", "-q", "origin", "main", "feature", "HEAD:refs/realities/from-git", cwd=work)
    commit_change(git, work, "b.txt", "b\n", "b", 1_800_000_060)
    git("push", "-q", "origin", "main", cwd=work)
    watcher.drain()
    first_push = sorted(e.ref for e in seen[:3])
    assert first_push == ["refs/heads/feature", "refs/heads/main", "refs/realities/from-git"]
    assert [e.ref for e in seen[3:]] == ["refs/heads/main"]
    assert all(e.source == "push" for e in seen)
    assert seen[3].changes()[0].path == "b.txt"


@v0_only
def test_a_push_without_options_has_none(git: Git, embedded: Embedded, tmp_path: Path) -> None:
    repo = embedded.repo
    seen: list[govc.Event] = []
    watcher = repo.watch(seen.append)
    work = clone(git, embedded.url, tmp_path / "work")
    commit_change(git, work, "a.txt", "a\n", "a", 1_800_000_000)
    git("push", "-q", "origin", "main", cwd=work)
    watcher.drain()
    assert [e.push_options for e in seen] == [()]


@v0_only
def test_a_failing_watcher_does_not_break_a_push(git: Git, embedded: Embedded, tmp_path: Path) -> None:
    repo = embedded.repo
    import threading

    release = threading.Event()

    def broken(event: govc.Event) -> None:
        raise RuntimeError("watcher bug")

    def stuck(event: govc.Event) -> None:
        release.wait(10)

    w1, w2 = repo.watch(broken), repo.watch(stuck)
    try:
        work = clone(git, embedded.url, tmp_path / "work")
        for i in range(3):
            pushed = commit_change(git, work, "n.txt", f"{i}\n", f"n{i}", 1_800_000_000 + i)
            git("push", "-q", "origin", "main", cwd=work)
            assert repo.reality("main").head.decode() == pushed
    finally:
        release.set()
    w1.drain()
    w2.drain()


# -- validators on pushes ----------------------------------------------------------------------


def add_secret_validator(repo: govc.Repository) -> None:
    @repo.validator
    def no_plaintext_secrets(change: govc.Change) -> None:
        for path, data in change.files.items():
            if data is not None and b"password=" in data:
                raise govc.ValidationError(f"secret in {path}")


@v0_only
def test_a_validator_rejects_a_push(git: Git, embedded: Embedded, tmp_path: Path) -> None:
    repo = embedded.repo
    add_secret_validator(repo)
    seen: list[govc.Event] = []
    watcher = repo.watch(seen.append)
    before, objects = repo.reality("main").head, len(repo.objects)
    work = clone(git, embedded.url, tmp_path / "work")
    commit_change(git, work, "app.conf", "password=hunter2\n", "oops", 1_800_000_000)
    result = git.fails("push", "origin", "main", cwd=work)
    lines = result.stderr.splitlines()
    assert " ! [remote rejected] main -> main (secret in app.conf)" in lines, result.describe()
    remote = [line for line in lines if line.startswith("remote:")]
    assert any("secret in app.conf" in line for line in remote), result.describe()
    assert repo.reality("main").head == before
    assert len(repo.objects) == objects  # the pushed objects stayed in quarantine
    assert git.ls_remote(embedded.url)["refs/heads/main"] == before.decode()
    watcher.drain()
    assert seen == []

    # The same validator also refuses the same change through the API.
    with pytest.raises(govc.ValidationError, match=r"secret in app\.conf"):
        repo.reality("main").apply({"app.conf": "password=hunter2\n"})


@v0_only
def test_a_validator_refuses_one_ref_of_a_push(git: Git, embedded: Embedded, tmp_path: Path) -> None:
    repo = embedded.repo

    @repo.validator(branches="main")
    def main_is_frozen(change: govc.Change) -> None:
        raise govc.ValidationError("main is frozen")

    work = clone(git, embedded.url, tmp_path / "work")
    pushed = commit_change(git, work, "a.txt", "a\n", "a", 1_800_000_000)
    result = git.fails("push", "origin", "main", "main:refs/heads/feature", cwd=work)
    lines = result.stderr.splitlines()
    assert " ! [remote rejected] main -> main (main is frozen)" in lines, result.describe()
    assert any(line.startswith(" * [new branch]") and "main -> feature" in line for line in lines)
    assert repo.reality("feature").head.decode() == pushed
    assert repo.reality("main").head.decode() != pushed


@v0_only
def test_a_validator_refusal_fails_an_atomic_push(git: Git, embedded: Embedded, tmp_path: Path) -> None:
    repo = embedded.repo

    @repo.validator(branches="main")
    def main_is_frozen(change: govc.Change) -> None:
        raise govc.ValidationError("main is frozen")

    work = clone(git, embedded.url, tmp_path / "work")
    commit_change(git, work, "a.txt", "a\n", "a", 1_800_000_000)
    result = git.fails("push", "--atomic", "origin", "main", "main:refs/heads/feature", cwd=work)
    assert " ! [remote rejected] main -> main (main is frozen)" in result.stderr.splitlines()
    assert repo.reality("feature").head is None


@v0_only
def test_a_validator_passes_a_clean_push(git: Git, embedded: Embedded, tmp_path: Path) -> None:
    repo = embedded.repo
    add_secret_validator(repo)
    changes: list[govc.Change] = []
    repo.validator(changes.append)
    work = clone(git, embedded.url, tmp_path / "work")
    pushed = commit_change(git, work, "app.conf", "password_file=/run/secrets/db\n", "ok", 1_800_000_000)
    git("push", "-q", "origin", "main", cwd=work)
    assert repo.reality("main").head.decode() == pushed
    assert [(c.branch, c.source, c.files) for c in changes] == [
        ("main", "push", {"app.conf": b"password_file=/run/secrets/db\n"}),
    ]


# -- the API and git on the same branch --------------------------------------------------------


@v0_only
def test_a_push_during_a_transaction_makes_it_conflict(git: Git, embedded: Embedded, tmp_path: Path) -> None:
    repo = embedded.repo
    work = clone(git, embedded.url, tmp_path / "work")
    with repo.transaction("main") as tx:
        tx.write("app.conf", "workers = 6\n")
        pushed = commit_change(git, work, "app.conf", "workers = 5\n", "git wins", 1_800_000_000)
        git("push", "-q", "origin", "main", cwd=work)
        with pytest.raises(govc.ConflictError):
            tx.commit("too late")
    assert repo.reality("main").head.decode() == pushed

    with repo.transaction("main", rebase=True) as tx:
        tx.write("nginx.conf", "server { listen 8443 ssl; }\n")
        commit_change(git, work, "README.md", "docs\n", "docs", 1_800_000_060)
        git("push", "-q", "origin", "main", cwd=work)
        rebased = tx.commit("rebased over the push")
    git("pull", "-q", "--ff-only", "origin", "main", cwd=work)
    assert git.rev_parse(work, "HEAD") == rebased.oid
    assert (work / "nginx.conf").read_text() == "server { listen 8443 ssl; }\n"
    assert (work / "README.md").read_text() == "docs\n"
    git.fsck(work)


@v0_only
def test_time_travel_across_a_push(git: Git, embedded: Embedded, tmp_path: Path) -> None:
    import time

    repo = embedded.repo
    before_api = repo.reality("main").head
    time.sleep(0.01)
    moment = time.time()
    time.sleep(0.01)
    work = clone(git, embedded.url, tmp_path / "work")
    commit_change(git, work, "app.conf", "workers = 5\n", "tune", 1_800_000_000)
    git("push", "-q", "origin", "main", cwd=work)
    snapshot = repo.time_travel(moment)
    assert snapshot.ref("main") == before_api
    assert snapshot.read("app.conf") == b"workers = 4\n"
    assert repo.time_travel(time.time()).read("app.conf") == b"workers = 5\n"


@v0_only
def test_promoting_a_reality_is_seen_by_git(git: Git, embedded: Embedded, tmp_path: Path) -> None:
    repo = embedded.repo
    work = clone(git, embedded.url, tmp_path / "work")
    canary = repo.parallel_reality("canary", ephemeral=True)
    canary.apply({"app.conf": "workers = 8\n"})
    repo.set_main(canary)
    git("pull", "-q", "--ff-only", "origin", "main", cwd=work, env=dates(1_800_000_000))
    assert (work / "app.conf").read_text() == "workers = 8\n"
    assert git.rev_parse(work, "HEAD") == canary.head.decode()
