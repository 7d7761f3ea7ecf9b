"""Repository names and the registry that holds repositories by name."""

from __future__ import annotations

import pytest

from govc.registry import Registry, RepositoryExists, RepositoryNameError, normalize_name
from storage.interfaces import RefUpdate
from tests.helpers import C6


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ("app", "app"),
        ("app.git", "app"),
        ("team/app", "team/app"),
        ("team/app.git", "team/app"),
        ("/team/app.git/", "team/app"),
        ("a.b-c_d", "a.b-c_d"),
        ("_private", "_private"),
        ("x" * 200, "x" * 200),
    ],
)
def test_valid_names(raw: str, name: str) -> None:
    assert normalize_name(raw) == name


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "/",
        ".git",
        "..",
        "../etc",
        "team/../app",
        "team/./app",
        "a//b",
        ".hidden",
        "team/.app",
        "-dash",
        "a b",
        "a\\b",
        "a:b",
        "x" * 201,
        "app.git.git",
        "team/app.git/x",
        "ü",
    ],
)
def test_invalid_names(raw: str) -> None:
    with pytest.raises(RepositoryNameError):
        normalize_name(raw)


def test_create_get_and_names() -> None:
    reg = Registry()
    repo = reg.create("team/app")
    assert reg.get("team/app.git") is repo
    assert reg.get("/team/app") is repo
    assert reg.get("other") is None
    with pytest.raises(RepositoryExists):
        reg.create("team/app.git")
    reg.create("alpha")
    assert reg.names() == ["alpha", "team/app"]
    assert len(reg) == 2


def test_get_or_create() -> None:
    reg = Registry()
    repo, created = reg.get_or_create("x.git")
    assert created and repo.name == "x"
    again, created = reg.get_or_create("x")
    assert again is repo and not created


def test_discard_if_empty_only_drops_empty_repositories() -> None:
    reg = Registry()
    repo, _ = reg.get_or_create("x")
    reg.discard_if_empty("x", repo)
    assert reg.get("x") is None
    repo, _ = reg.get_or_create("y")
    repo.objects.add_object(3, b"blob")
    repo.update_refs([RefUpdate("refs/heads/main", C6)], who="t", message="t", source="test")
    reg.discard_if_empty("y", repo)
    assert reg.get("y") is repo


def test_discard_if_empty_leaves_a_replacement_alone() -> None:
    reg = Registry()
    old, _ = reg.get_or_create("x")
    reg.discard_if_empty("x", old)
    new, _ = reg.get_or_create("x")
    reg.discard_if_empty("x", old)  # a late call about the old object must not drop the new one
    assert reg.get("x") is new


def test_invalid_name_on_lookup() -> None:
    with pytest.raises(RepositoryNameError):
        Registry().get("../x")
