"""The work-tree commands (``govc init/add/commit/branch/checkout/status/log/diff/show``), driven
through click's CliRunner in a temporary directory and checked against the real git binary."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from govc.cli import main
from tests.helpers import git, have_git

pytestmark = pytest.mark.skipif(not have_git(), reason="needs the git binary")


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "home"
    home.mkdir()
    root = tmp_path / "infra"
    root.mkdir()
    for key in list(os.environ):
        if key.startswith("GIT_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Ops Person")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "ops@example.com")
    monkeypatch.chdir(root)
    yield root


def govc(*args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == code, (args, result.output)
    return result


def real_git(root: Path, *args: str) -> str:
    env = {"HOME": str(root.parent / "home"), "GIT_CONFIG_NOSYSTEM": "1"}
    return git("-C", root, *args, env=env).stdout.decode()


def write(root: Path, path: str, text: str) -> None:
    (root / path).parent.mkdir(parents=True, exist_ok=True)
    (root / path).write_text(text)


def test_quick_start_end_to_end(work: Path) -> None:
    write(work, "configs/lb.conf", "backends = 2\n")
    govc("init")
    govc("branch", "staging")
    govc("branch", "canary")
    assert govc("branch").output == "  canary\n* main\n  staging\n"
    govc("checkout", "staging")
    write(work, "configs/lb.conf", "backends = 4\n")
    write(work, "configs/new/x", "x = 1\n")
    govc("add", "configs/")
    govc("commit", "-m", "Test new load balancer config")
    staging_log = govc("log", "--oneline").output.splitlines()
    subjects = [line.split(" ", 1)[1] for line in staging_log]
    assert subjects == ["Test new load balancer config", "Initial commit"]

    govc("checkout", "main")  # previous state restored
    assert (work / "configs/lb.conf").read_text() == "backends = 2\n"
    assert not (work / "configs/new").exists()
    assert json.loads(govc("status", "--json").output)["branch"] == "main"
    branches = json.loads(govc("branch", "--json").output)
    assert branches["current"] == "main"
    assert {b["name"] for b in branches["branches"]} == {"main", "staging", "canary"}

    # The real git sees the same history, objects and files.
    assert real_git(work, "log", "--oneline", "staging") == "\n".join(staging_log) + "\n"
    assert real_git(work, "log", "--oneline") == govc("log", "--oneline").output
    done = git("-C", work, "fsck", "--strict", "--no-progress", check=False,
               env={"HOME": str(work.parent / "home")})
    assert done.returncode == 0, done.stderr
    assert real_git(work, "cat-file", "-p", "staging:configs/new/x") == "x = 1\n"
    assert real_git(work, "cat-file", "-p", "HEAD:configs/lb.conf") == "backends = 2\n"
    assert real_git(work, "symbolic-ref", "HEAD") == "refs/heads/main\n"
    assert real_git(work, "status", "--porcelain") == ""
    author = real_git(work, "log", "-1", "--format=%an <%ae>", "staging").strip()
    assert author == "Ops Person <ops@example.com>"

    govc("checkout", "staging")
    assert (work / "configs/new/x").read_text() == "x = 1\n"
    assert govc("show", "main:configs/lb.conf").output == "backends = 2\n"


def test_status_add_and_git_status_agree(work: Path) -> None:
    write(work, "a.txt", "a\n")
    govc("init")
    write(work, "a.txt", "a2\n")
    write(work, "b.txt", "b\n")
    status = json.loads(govc("status", "--json").output)
    assert status["unstaged"] == [{"path": "a.txt", "change": "modified"}]
    assert status["untracked"] == ["b.txt"]
    govc("add", "b.txt")
    status = json.loads(govc("status", "--json").output)
    assert status["staged"] == [{"path": "b.txt", "change": "added"}]
    assert sorted(real_git(work, "status", "--porcelain").splitlines()) == [" M a.txt", "A  b.txt"]
    (work / "a.txt").unlink()
    govc("add", "a.txt")
    assert real_git(work, "status", "--porcelain").splitlines() == ["D  a.txt", "A  b.txt"]
    govc("commit", "-m", "swap", "--author", "Other <other@example.com>")
    assert real_git(work, "status", "--porcelain") == ""
    assert "nothing to commit" in govc("status").output
    assert real_git(work, "ls-tree", "--name-only", "HEAD") == "b.txt\n"
    assert real_git(work, "log", "-1", "--format=%an").strip() == "Other"


def test_checkout_refuses_uncommitted_changes(work: Path) -> None:
    write(work, "app.conf", "workers = 4\n")
    govc("init")
    govc("branch", "staging")
    write(work, "app.conf", "workers = 8\n")
    result = govc("checkout", "staging", code=1)
    assert result.output.strip().startswith("Error: ")
    assert len(result.output.strip().splitlines()) == 1
    assert "uncommitted" in result.output
    assert (work / "app.conf").read_text() == "workers = 8\n"
    assert real_git(work, "symbolic-ref", "HEAD") == "refs/heads/main\n"


def test_errors_and_usage(work: Path) -> None:
    assert govc("status", code=1).output.startswith("Error: not a govc repository")
    govc("init")
    assert govc("init", code=1).output.startswith("Error: ")
    assert govc("commit", "-m", "empty", code=1).output.startswith("Error: nothing to commit")
    assert govc("checkout", "nope", code=1).output.startswith("Error: no branch")
    assert govc("add", "missing", code=1).output.startswith("Error: pathspec")
    assert govc("branch", "main", code=1).output.startswith("Error: ")
    govc("commit", code=2)  # -m is required
    for command in ("init", "add", "commit", "branch", "checkout", "status", "log", "diff", "show"):
        assert "Examples:" in govc(command, "--help").output


def test_diff_log_show(work: Path) -> None:
    write(work, "f.txt", "one\n")
    govc("init")
    write(work, "f.txt", "two\n")
    diff = govc("diff").output
    assert "-one\n+two\n" in diff and "--- a/f.txt" in diff
    govc("add", ".")
    govc("commit", "-m", "second")
    assert govc("diff").output == ""
    assert "-one\n+two\n" in govc("diff", "HEAD~1", "HEAD").output
    log = json.loads(govc("log", "--json").output)
    assert [c["message"] for c in log] == ["second\n", "Initial commit\n"]
    assert log[0]["parents"] == [log[1]["id"]]
    assert govc("log", "-n", "1", "--oneline").output == f"{log[0]['id'][:7]} second\n"
    assert govc("show", f"{log[1]['id'][:8]}:f.txt").output == "one\n"
    assert "commit " + log[0]["id"] in govc("show").output
    assert govc("log", "--oneline").output == real_git(work, "log", "--oneline")


def test_reads_what_git_wrote(work: Path) -> None:
    """Commits made and packed by stock git (gc moves refs into packed-refs) are govc's history too."""
    write(work, "a", "a\n")
    govc("init")
    write(work, "g.txt", "from git\n")
    real_git(work, "add", "g.txt")
    git("-C", work, "-c", "user.name=G", "-c", "user.email=g@example.com", "commit", "-qm", "by git",
        env={"HOME": str(work.parent / "home")})
    real_git(work, "gc", "-q")
    assert govc("log", "--oneline", "-n", "1").output.endswith(" by git\n")
    govc("branch", "side")
    govc("checkout", "side")
    write(work, "g.txt", "changed by govc\n")
    govc("add", "g.txt")
    govc("commit", "-m", "govc on top")
    assert real_git(work, "cat-file", "-p", "side:g.txt") == "changed by govc\n"
    done = git("-C", work, "fsck", "--strict", "--no-progress", check=False,
               env={"HOME": str(work.parent / "home")})
    assert done.returncode == 0, done.stderr


def _three_branches(work: Path) -> None:
    write(work, "app.conf", "a = 1\nb = 2\nc = 3\n")
    govc("init")
    govc("branch", "staging")
    write(work, "app.conf", "a = 10\nb = 2\nc = 3\n")
    govc("add", "app.conf")
    govc("commit", "-m", "main changes a")
    govc("checkout", "staging")
    write(work, "app.conf", "a = 1\nb = 2\nc = 30\n")
    write(work, "extra.txt", "new\n")
    govc("add", ".")
    govc("commit", "-m", "staging changes c")
    govc("checkout", "main")


def test_merge_clean_makes_two_parent_commit(work: Path) -> None:
    _three_branches(work)
    govc("merge", "staging")
    assert (work / "app.conf").read_text() == "a = 10\nb = 2\nc = 30\n"
    assert (work / "extra.txt").read_text() == "new\n"
    head = json.loads(govc("log", "--json", "-n", "1").output)[0]
    assert len(head["parents"]) == 2
    assert head["parents"][1] == real_git(work, "rev-parse", "staging").strip()
    graph = real_git(work, "log", "--graph", "--oneline")
    assert "*   " in graph and "|\\" in graph
    assert real_git(work, "status", "--porcelain") == ""
    assert git("-C", work, "fsck", "--strict", "--no-progress", check=False,
               env={"HOME": str(work.parent / "home")}).returncode == 0
    assert govc("merge", "staging").exit_code == 0  # already up to date: nothing happens
    assert json.loads(govc("log", "--json", "-n", "1").output)[0]["id"] == head["id"]


def test_merge_fast_forward_and_conflict(work: Path) -> None:
    write(work, "app.conf", "workers = 4\n")
    govc("init")
    govc("branch", "staging")
    govc("checkout", "staging")
    write(work, "app.conf", "workers = 8\n")
    govc("add", ".")
    govc("commit", "-m", "eight")
    govc("checkout", "main")
    govc("merge", "staging")  # fast-forward
    assert real_git(work, "rev-parse", "main") == real_git(work, "rev-parse", "staging")
    assert (work / "app.conf").read_text() == "workers = 8\n"

    write(work, "app.conf", "workers = 16\n")
    govc("add", ".")
    govc("commit", "-m", "sixteen")
    govc("checkout", "staging")
    write(work, "app.conf", "workers = 2\n")
    govc("add", ".")
    govc("commit", "-m", "two")
    govc("checkout", "main")
    before = real_git(work, "rev-parse", "main", "staging")
    result = govc("merge", "staging", code=1)
    assert "CONFLICT (content): app.conf" in result.output
    assert "nothing was changed" in result.output
    assert real_git(work, "rev-parse", "main", "staging") == before
    assert (work / "app.conf").read_text() == "workers = 16\n"
    assert real_git(work, "status", "--porcelain") == ""
    assert govc("merge", "nope", code=1).output.startswith("Error: no branch or reality")
    write(work, "app.conf", "dirty\n")
    assert "uncommitted" in govc("merge", "staging", code=1).output


def test_realities_create_list_promote_drop(work: Path) -> None:
    write(work, "app.conf", "v1\n")
    govc("init")
    govc("branch", "canary-work")
    govc("checkout", "canary-work")
    write(work, "app.conf", "v2\n")
    govc("add", ".")
    govc("commit", "-m", "v2")
    govc("checkout", "main")
    govc("reality", "create", "canary", "--from", "canary-work")
    govc("reality", "create", "blue")
    assert govc("reality", "create", "blue", code=1).output.startswith("Error: ")
    # Ephemeral realities live in a running server's memory; without a govc remote that is an error.
    assert "not a govc server URL" in govc("reality", "create", "tmp", "--ephemeral", code=1).output
    listed = json.loads(govc("reality", "list", "--json").output)
    assert [r["name"] for r in listed] == ["blue", "canary"]
    assert listed[1]["subject"] == "v2" and listed[1]["ref"] == "refs/realities/canary"
    assert real_git(work, "rev-parse", "refs/realities/canary") == real_git(work, "rev-parse", "canary-work")
    assert "canary\t" in govc("reality", "list").output

    govc("reality", "promote", "canary")
    assert real_git(work, "rev-parse", "main") == real_git(work, "rev-parse", "canary-work")
    assert (work / "app.conf").read_text() == "v2\n"
    assert real_git(work, "status", "--porcelain") == ""
    govc("merge", "blue")  # a reality merges like a branch (here: already contained)

    govc("reality", "drop", "blue")
    real_git(work, "pack-refs", "--all")  # drop also works on packed refs
    govc("reality", "drop", "canary")
    assert govc("reality", "list", "--json").output.strip() == "[]"
    assert real_git(work, "for-each-ref", "refs/realities") == ""
    assert govc("reality", "drop", "canary", code=1).output.startswith("Error: no reality")
    assert git("-C", work, "fsck", "--strict", "--no-progress", check=False,
               env={"HOME": str(work.parent / "home")}).returncode == 0


def test_time_travel_at(work: Path) -> None:
    """The issue's example: a commit made by git on 2024-01-15 03:00 UTC, a govc commit now."""
    write(work, "lb.conf", "backends = 2\n")
    write(work, "other.txt", "same\n")
    dated = {"HOME": str(work.parent / "home"), "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "First",
             "GIT_AUTHOR_EMAIL": "first@example.com", "GIT_COMMITTER_NAME": "First",
             "GIT_COMMITTER_EMAIL": "first@example.com", "GIT_AUTHOR_DATE": "2024-01-15T03:00:00Z",
             "GIT_COMMITTER_DATE": "2024-01-15T03:00:00Z"}
    git("-C", work, "init", "-q", "-b", "main", env=dated)
    git("-C", work, "add", ".", env=dated)
    git("-C", work, "commit", "-qm", "two backends", env=dated)
    write(work, "lb.conf", "backends = 4\n")
    govc("add", ".")
    govc("commit", "-m", "more backends", "--author", "Second <second@example.com>")

    then = govc("at", "2024-01-15 03:42+00:00", "lb.conf")
    assert then.stdout == "backends = 2\n"
    assert "First <first@example.com>" in then.stderr and "two backends" in then.stderr
    assert govc("at", "2024-01-16", "lb.conf").stdout == "backends = 2\n"  # local time, no offset
    now = govc("at", "now", "lb.conf")
    assert now.stdout == "backends = 4\n" and "Second <second@example.com>" in now.stderr
    listing = govc("at", "now").output
    assert "Second\tlb.conf" in listing and "First\tother.txt" in listing
    data = json.loads(govc("at", "now", "--json").output)
    assert {f["path"]: f["changed"]["author"].split(" ")[0] for f in data["files"]} == {
        "lb.conf": "Second", "other.txt": "First"}
    old = json.loads(govc("at", "2024-01-15T03:42Z", "--json").output)
    assert old["commit"] == real_git(work, "rev-parse", "HEAD~1").strip()
    assert govc("at", f"@{datetime(2024, 1, 15, 3, 42, tzinfo=UTC).timestamp():.0f}",
                "lb.conf").stdout == "backends = 2\n"
    assert govc("at", "2024-01-14 12:00Z", code=1).output.startswith("Error: HEAD had no commits yet")
    assert govc("at", "yesterday-ish", code=1).output.startswith("Error: cannot read the time")
    assert govc("at", "now", "missing", code=1).output.startswith("Error: path")
    assert "Examples:" in govc("at", "--help").output


def test_shell_completion_and_help(work: Path) -> None:
    write(work, "a", "a\n")
    govc("init")
    govc("branch", "staging")
    govc("reality", "create", "canary")
    script = CliRunner().invoke(main, [], prog_name="govc", env={"_GOVC_COMPLETE": "bash_source"})
    assert "_govc_completion" in script.output
    env = {"_GOVC_COMPLETE": "bash_complete", "COMP_WORDS": "govc merge ", "COMP_CWORD": "2"}
    offered = CliRunner().invoke(main, [], prog_name="govc", env=env).output
    assert "plain,staging" in offered and "plain,canary" in offered
    for command in ("merge", "reality", "at", "push", "pull", "clone"):
        assert "Examples:" in govc(command, "--help").output
