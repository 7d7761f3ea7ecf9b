"""Fixtures shared by the unit tests: the transcript repositories, built once per session.

``make-repo.sh`` (beside the protocol transcripts) rebuilds the repository the transcripts were
recorded against with fixed object ids; ``served`` holds it in three states: as built (c6 on
main), advanced (c8 on main, the state of 06, 07, 17, 21 and 22) and empty.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import settings

from tests.helpers import (
    TRANSCRIPTS,
    GitSnapshot,
    build_repository,
    git,
    git_env,
    have_git,
    read_git_repo,
)

# Property tests: no example database in the work tree, no per-example deadline (CI machines are
# noisy), and a fixed seed so that a run is reproducible.
settings.register_profile("govc", database=None, deadline=None, derandomize=True)
settings.load_profile("govc")


@dataclass(frozen=True)
class Served:
    repo: Path  # main at c6
    advanced: Path  # main at c8
    empty: Path
    repo_snapshot: GitSnapshot
    advanced_snapshot: GitSnapshot


def _require_transcripts() -> None:
    if not (TRANSCRIPTS / "make-repo.sh").exists():
        pytest.skip(f"protocol transcripts not found at {TRANSCRIPTS}")
    if not have_git():
        pytest.skip("git is not installed")


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Served:
    _require_transcripts()
    root = tmp_path_factory.mktemp("served")
    script = TRANSCRIPTS / "make-repo.sh"

    def sh(*args: str) -> None:
        subprocess.run(
            ["sh", str(script), *args], check=True, env=git_env(root), capture_output=True, timeout=120
        )

    sh("repo", str(root / "repo.git"))
    shutil.copytree(root / "repo.git", root / "advanced.git")
    sh("advance", str(root / "advanced.git"))
    sh("empty", str(root / "empty.git"))
    # The build is deterministic: the pack's name is the one every transcript shows.
    assert git("--git-dir", root / "advanced.git", "rev-parse", "main").stdout.strip() == (
        b"82bdd13ddc529e12c4cc38dc70e671aa60a7717a"
    )
    return Served(
        root / "repo.git",
        root / "advanced.git",
        root / "empty.git",
        read_git_repo(root / "repo.git"),
        read_git_repo(root / "advanced.git"),
    )


@pytest.fixture
def repo_c6(served: Served):  # -> govc.Repository
    """A fresh govc repository holding the transcript repository (main at c6)."""
    return build_repository(served.repo_snapshot)


@pytest.fixture
def repo_c8(served: Served):
    """A fresh govc repository holding the advanced transcript repository (main at c8)."""
    return build_repository(served.advanced_snapshot)


@pytest.fixture
def transcripts() -> Path:
    if not TRANSCRIPTS.is_dir():
        pytest.skip(f"protocol transcripts not found at {TRANSCRIPTS}")
    return TRANSCRIPTS


@pytest.fixture
def git_required() -> None:
    if not have_git():
        pytest.skip("git is not installed")


# --------------------------------------------------------------------------------------------
# A small stock-git history for persistence and import/export tests

GIT_HISTORY_HEAD = "refs/heads/main"


def _history_text(variant: int) -> str:
    """About 24 KB of deterministic text; variants differ in a few lines (so git deltas them)."""
    lines = [f"{i:04d} " + hashlib.sha1(b"%d" % i).hexdigest() * 2 + "\n" for i in range(300)]
    for i in range(variant, 300, 97 if variant else 301):
        lines[i] = f"{i:04d} changed in variant {variant}\n"
    return "".join(lines)


def build_git_history(work: Path) -> Path:
    """A non-bare repository made by stock git::

        c1 -- c2 ------ M -- c5      main (HEAD)
          \\   \\       /
           \\   c4 ----/--        release/1.x
            c3 -------+          feature

    Tags: ``light`` (lightweight, c1), ``v1.0`` (annotated, M), ``v1.0-nested`` (annotated tag
    of the tag v1.0) and ``blob-tag`` (annotated tag of a blob). ``big.txt`` changes in c2 and
    c5, so packs made from it carry deltas. Dates are fixed: object ids are the same every run.
    """
    clock = iter(range(1_700_000_000, 1_700_100_000, 60))

    def run(*args: str) -> None:
        stamp = f"{next(clock)} +0000"
        git("-C", work, *args, env={"GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp})

    def commit(message: str, files: dict[str, str]) -> None:
        for name, content in files.items():
            (work / name).write_text(content)
            run("add", "--", name)
        run("commit", "-q", "-m", message)

    git("init", "-q", "-b", "main", work)
    commit("c1: start", {"README.md": "# sample\n", "big.txt": _history_text(0)})
    run("tag", "light")
    run("checkout", "-q", "-b", "feature")
    commit("c3: feature", {"feature.txt": "on\n"})
    run("checkout", "-q", "main")
    commit("c2: edit big", {"big.txt": _history_text(1), "hello.txt": "hello\n"})
    run("checkout", "-q", "-b", "release/1.x")
    commit("c4: release", {"hello.txt": "hello, release\n"})
    run("checkout", "-q", "main")
    run("merge", "-q", "--no-ff", "-m", "M: merge feature", "feature")
    run("tag", "-a", "v1.0", "-m", "Version 1.0")
    run("tag", "-a", "v1.0-nested", "-m", "A tag of the tag v1.0", "v1.0")
    blob = git("-C", work, "rev-parse", "HEAD:README.md").stdout.decode().strip()
    run("tag", "-a", "blob-tag", "-m", "A tag of a blob", blob)
    commit("c5: edit big again", {"big.txt": _history_text(2)})
    return work


@pytest.fixture(scope="session")
def git_history_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not have_git():
        pytest.skip("git is not installed")
    return build_git_history(tmp_path_factory.mktemp("git-history") / "work")


@pytest.fixture
def git_history(git_history_template: Path, tmp_path: Path) -> Path:
    """A private copy of :func:`build_git_history`'s repository (non-bare, loose objects)."""
    dest = tmp_path / "source"
    shutil.copytree(git_history_template, dest, symlinks=True)
    return dest
