"""Fixtures shared by the unit tests: the transcript repositories, built once per session.

``make-repo.sh`` (beside the protocol transcripts) rebuilds the repository the transcripts were
recorded against with fixed object ids; ``served`` holds it in three states: as built (c6 on
main), advanced (c8 on main, the state of 06, 07, 17, 21 and 22) and empty.
"""

from __future__ import annotations

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
