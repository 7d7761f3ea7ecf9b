"""``govc import`` / ``govc export`` in Python: stock git repositories in and out of a data
directory, checked with the git binary (fsck, show-ref, rev-list)."""

from __future__ import annotations

from pathlib import Path

import pytest

from govc.portability import PortabilityError, export_repository, import_repository
from govc.registry import Registry, RepositoryNameError
from storage.disk import DataDirectory
from tests.helpers import git

MAIN = "refs/heads/main"


def run(repo: Path, *args: str) -> str:
    return git("-C", repo, *args).stdout.decode()


def show_ref_d(repo: Path) -> dict[str, str]:
    """``git show-ref -d``: every ref plus the peeled ``^{}`` entries of tags."""
    out = git("-C", repo, "show-ref", "-d", check=False).stdout.decode()
    return {name: oid for oid, name in (line.split(" ", 1) for line in out.splitlines())}


def all_objects(repo: Path) -> list[str]:
    out = run(repo, "rev-list", "--all", "--objects")
    return sorted(line.split(" ", 1)[0] for line in out.splitlines())


def head_symref(repo: Path) -> str:
    return run(repo, "symbolic-ref", "HEAD").strip()


def fsck_clean(repo: Path) -> None:
    done = git("-C", repo, "fsck", "--strict", "--full", "--no-progress", "--no-dangling", check=False)
    assert done.returncode == 0 and not done.stdout.strip() and not done.stderr.strip(), done


def assert_same_repository(exported: Path, source: Path) -> None:
    fsck_clean(exported)
    assert show_ref_d(exported) == show_ref_d(source)
    assert all_objects(exported) == all_objects(source)
    assert head_symref(exported) == head_symref(source)


@pytest.fixture
def directory(tmp_path: Path) -> DataDirectory:
    d = DataDirectory(tmp_path / "data")
    yield d
    d.close()


@pytest.fixture
def bare_source(git_history: Path, tmp_path: Path) -> Path:
    """The sample history as a bare repository (packed, packed-refs) named ``app.git``."""
    bare = tmp_path / "app.git"
    git("clone", "-q", "--mirror", git_history, bare)
    return bare


def test_import_a_non_bare_repository_and_export_it_back(
    directory: DataDirectory, git_history: Path, tmp_path: Path
) -> None:
    repo = import_repository(directory, git_history)
    assert repo.name == "source"  # the work tree's directory name
    assert directory.repo_names() == ["source"]
    assert len(repo.refs) == len(show_ref_d(git_history)) - 3  # three peeled tags
    out = export_repository(repo, tmp_path / "out.git")
    assert out == tmp_path / "out.git"
    assert_same_repository(out, git_history)
    assert run(out, "rev-parse", "--is-bare-repository").strip() == "true"
    assert run(out, "cat-file", "-p", "refs/tags/v1.0-nested").startswith(
        f"object {show_ref_d(git_history)['refs/tags/v1.0']}\ntype tag\n"
    )


def test_import_a_bare_repository(directory: DataDirectory, bare_source: Path, tmp_path: Path) -> None:
    repo = import_repository(directory, bare_source)
    assert repo.name == "app"
    assert_same_repository(export_repository(repo, tmp_path / "out.git"), bare_source)


def test_an_import_survives_a_restart(directory: DataDirectory, bare_source: Path, tmp_path: Path) -> None:
    git("-C", bare_source, "symbolic-ref", "HEAD", "refs/heads/release/1.x")
    import_repository(directory, bare_source, name="team/app")
    directory.close()
    registry = Registry(DataDirectory(directory.path))
    assert registry.names() == ["team/app"]
    restored = registry.get("team/app")
    assert restored is not None
    assert restored.head_target == "refs/heads/release/1.x"
    assert [e.who for e in restored.refs.reflog(MAIN)] == ["govc import"]
    out = export_repository(restored, tmp_path / "out.git")
    assert_same_repository(out, bare_source)
    assert head_symref(out) == "refs/heads/release/1.x"


@pytest.mark.parametrize("head", ["refs/heads/feature", "refs/heads/release/1.x"])
def test_head_is_preserved_when_it_is_not_main(
    directory: DataDirectory, git_history: Path, tmp_path: Path, head: str
) -> None:
    git("-C", git_history, "checkout", "-q", head.removeprefix("refs/heads/"))
    repo = import_repository(directory, git_history)
    assert repo.head_target == head
    out = export_repository(repo, tmp_path / "out.git")
    assert head_symref(out) == head
    clone = tmp_path / "clone"
    git("clone", "-q", out, clone)
    assert run(clone, "symbolic-ref", "HEAD").strip() == head


def test_a_clone_of_an_export_is_whole(directory: DataDirectory, git_history: Path, tmp_path: Path) -> None:
    out = export_repository(import_repository(directory, git_history), tmp_path / "out.git")
    clone = tmp_path / "clone"
    git("-c", "transfer.fsckObjects=true", "clone", "-q", "--mirror", out, clone)
    fsck_clean(clone)
    assert show_ref_d(clone) == show_ref_d(git_history)
    assert (tmp_path / "out.git" / "packed-refs").read_text().startswith("# pack-refs with: peeled")


def test_importing_twice_is_an_error(directory: DataDirectory, git_history: Path) -> None:
    import_repository(directory, git_history, name="app")
    with pytest.raises(PortabilityError, match="repository 'app' already exists"):
        import_repository(directory, git_history, name="app.git")
    assert directory.repo_names() == ["app"]


def test_export_refuses_a_non_empty_destination(
    directory: DataDirectory, git_history: Path, tmp_path: Path
) -> None:
    repo = import_repository(directory, git_history)
    dest = tmp_path / "busy"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine\n")
    with pytest.raises(PortabilityError, match="exists and is not empty"):
        export_repository(repo, dest)
    assert [p.name for p in dest.iterdir()] == ["keep.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_same_repository(export_repository(repo, empty), git_history)  # an empty one is fine


def test_import_of_an_empty_repository(directory: DataDirectory, tmp_path: Path) -> None:
    source = tmp_path / "empty.git"
    git("init", "-q", "--bare", "-b", "main", source)
    repo = import_repository(directory, source)
    assert repo.name == "empty"
    assert repo.is_empty()
    assert len(repo.objects) == 0
    assert directory.repo_names() == ["empty"]
    out = export_repository(repo, tmp_path / "out.git")
    # git's own notices about an empty repository, and nothing else
    fsck = ("fsck", "--strict", "--full", "--no-progress", "--no-dangling")
    assert git("-C", out, *fsck).stderr == git("-C", source, *fsck).stderr
    assert show_ref_d(out) == {}
    assert head_symref(out) == MAIN
    assert list((out / "objects" / "pack").iterdir()) == []


def test_import_of_an_empty_repository_keeps_its_head(directory: DataDirectory, tmp_path: Path) -> None:
    source = tmp_path / "empty.git"
    git("init", "-q", "--bare", "-b", "trunk", source)
    repo = import_repository(directory, source)
    assert repo.head_target == "refs/heads/trunk"


def test_import_with_a_detached_head(directory: DataDirectory, git_history: Path, tmp_path: Path) -> None:
    git("-C", git_history, "checkout", "-q", "--detach", "HEAD~1")
    repo = import_repository(directory, git_history)
    assert repo.refs.get(MAIN) == run(git_history, "rev-parse", MAIN).strip().encode()
    out = export_repository(repo, tmp_path / "out.git")
    fsck_clean(out)
    assert show_ref_d(out) == show_ref_d(git_history)


def test_import_with_loose_objects_and_packs_mixed(
    directory: DataDirectory, git_history: Path, tmp_path: Path
) -> None:
    git("-C", git_history, "repack", "-q", "-d")
    (git_history / "extra.txt").write_text("loose\n")
    git("-C", git_history, "add", "extra.txt")
    git(
        "-C",
        git_history,
        "commit",
        "-q",
        "-m",
        "loose commit",
        env={"GIT_AUTHOR_DATE": "1700200000 +0000", "GIT_COMMITTER_DATE": "1700200000 +0000"},
    )
    assert_same_repository(
        export_repository(import_repository(directory, git_history), tmp_path / "out.git"), git_history
    )


def test_import_names(directory: DataDirectory, git_history: Path) -> None:
    assert import_repository(directory, git_history, name="/team/app.git/").name == "team/app"
    with pytest.raises(RepositoryNameError):
        import_repository(directory, git_history, name="../escape")
    assert directory.repo_names() == ["team/app"]


def test_import_of_something_that_is_not_a_repository(directory: DataDirectory, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(PortabilityError, match="rev-parse"):
        import_repository(directory, plain)
    with pytest.raises(PortabilityError, match="does not exist"):
        import_repository(directory, tmp_path / "missing")
    assert directory.repo_names() == []


def test_a_failed_import_leaves_no_repository_behind(
    directory: DataDirectory, git_history: Path, tmp_path: Path
) -> None:
    # Lose one loose object (the first version of big.txt): git cannot pack everything.
    blob = run(git_history, "rev-parse", "main~3:big.txt").strip()
    (git_history / ".git" / "objects" / blob[:2] / blob[2:]).unlink()
    with pytest.raises(PortabilityError, match="pack-objects"):
        import_repository(directory, git_history, name="broken")
    assert directory.repo_names() == []
    assert not (directory.path / "repos" / "broken.git").exists()
    # and the name is still free
    good = tmp_path / "good.git"
    git("init", "-q", "--bare", good)
    assert import_repository(directory, good, name="broken").name == "broken"


def test_import_of_a_clone_with_remote_tracking_refs(
    directory: DataDirectory, git_history: Path, tmp_path: Path
) -> None:
    clone = tmp_path / "work"
    git("clone", "-q", git_history, clone)
    repo = import_repository(directory, clone)
    assert repo.name == "work"
    assert repo.refs.get("refs/remotes/origin/feature") is not None
    out = export_repository(repo, tmp_path / "out.git")
    fsck_clean(out)
    assert show_ref_d(out) == show_ref_d(clone)
    assert all_objects(out) == all_objects(clone)
