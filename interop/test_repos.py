"""Which repositories exist and what their HEAD is: creation by push or API, names, 404s."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from interop.conftest import ALL_REFSPECS, Git, Server, http_request


def test_push_created_repository_has_head_on_main(
    git: Git, history: Path, push_target: Callable[..., str], tmp_path: Path
) -> None:
    """The first push creates the repository, and its HEAD points at main.

    (In reference mode the repository is made by ``git init --bare`` first: stock git cannot
    create one on push.) Other branches are pushed too, so a server that picked "the first
    branch it saw" instead of main would fail.
    """
    url = push_target()
    git("push", "-q", url, *ALL_REFSPECS, cwd=history)
    assert git.remote_head_symref(url) == "refs/heads/main"
    remote = git.ls_remote(url)
    assert remote["HEAD"] == remote["refs/heads/main"] == git.rev_parse(history, "main")
    work = tmp_path / "work"
    git("clone", "-q", url, work)
    assert git("symbolic-ref", "HEAD", cwd=work).stdout.strip() == "refs/heads/main"
    git.fsck(work)


def test_push_created_repository_without_main_points_head_at_pushed_branch(
    git: Git, history: Path, push_target: Callable[..., str], server: Server
) -> None:
    """A repository created by pushing only ``feature`` gets HEAD -> refs/heads/feature.

    govc's own rule (stock git cannot create repositories on push), so it has no reference.
    """
    if server.is_reference:
        pytest.skip("creation on push is a govc feature; git-http-backend has no equivalent")
    url = push_target()
    git("push", "-q", url, "feature", cwd=history)
    assert git.remote_head_symref(url) == "refs/heads/feature"
    assert git.ls_remote(url)["HEAD"] == git.rev_parse(history, "feature")


@pytest.mark.parametrize("proto", [pytest.param(2, id="v2")], indirect=True)
def test_api_creates_empty_repository_once(git: Git, server: Server, tmp_path: Path) -> None:
    """``POST /api/v1/repos`` answers 201 for a new name and 409 for one that exists.

    The created repository is empty with an unborn main (a v2 clone learns that HEAD).
    """
    if server.is_reference:
        pytest.skip("the repository API is govc's own")
    name = "api/created"
    payload = json.dumps({"name": name}).encode()
    headers = {"Content-Type": "application/json"}
    status, body = http_request("POST", f"{server.base_url}/api/v1/repos", payload, headers)
    assert status == 201, body
    status, body = http_request("POST", f"{server.base_url}/api/v1/repos", payload, headers)
    assert status == 409, body
    work = tmp_path / "work"
    result = git("-c", "init.defaultBranch=trunk", "clone", server.url(name), work)
    assert "empty repository" in result.stderr, result.describe()
    assert git("symbolic-ref", "HEAD", cwd=work).stdout.strip() == "refs/heads/main"


def test_clone_of_a_missing_repository_fails_with_not_found(git: Git, server: Server, tmp_path: Path) -> None:
    """Cloning or listing a repository that does not exist fails, and git says "not found".

    git prints "repository '...' not found" only when the server answers 404, so this pins
    the status code too. Nothing must be created as a side effect of the attempt.
    """
    url = server.url("does/not/exist")
    result = git.fails("clone", url, tmp_path / "nothing")
    assert "not found" in result.stderr.lower(), result.describe()
    listing = git.fails("ls-remote", url)
    assert "not found" in listing.stderr.lower(), listing.describe()
    status, _ = http_request("GET", f"{url}/info/refs?service=git-upload-pack")
    assert status == 404


def test_repository_name_with_a_slash(
    git: Git,
    history: Path,
    new_repo: Callable[..., str],
    server: Server,
    tmp_path: Path,
    proto: int,
) -> None:
    """``team/app.git`` works end to end and is kept apart from ``team.git`` beside it."""
    team = f"team-v{proto}"
    url = new_repo(f"{team}/app")
    assert url == f"{server.base_url}/{team}/app.git"
    sibling = new_repo(team)
    git("push", "-q", url, *ALL_REFSPECS, cwd=history)
    git("push", "-q", sibling, "feature:main", cwd=history)

    work = tmp_path / "work"
    git("clone", "-q", url, work)
    assert git.rev_parse(work, "HEAD") == git.rev_parse(history, "main")
    assert git.refs(work, "refs/tags/") == git.refs(history, "refs/tags/")
    git.fsck(work)
    assert git.ls_remote(sibling) == {
        "HEAD": git.rev_parse(history, "feature"),
        "refs/heads/main": git.rev_parse(history, "feature"),
    }
    missing = git.fails("ls-remote", server.url(f"{team}/other"))
    assert "not found" in missing.stderr.lower(), missing.describe()
