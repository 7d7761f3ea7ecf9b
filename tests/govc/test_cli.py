"""The ``govc`` command line, run in-process with click's CliRunner: exit codes (0 done, 1 a
failure with one ``Error:`` line, 2 a usage error), help texts, import and export."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from govc.cli import default_data_dir, main
from storage.disk import DataDirectory
from tests.helpers import git


def invoke(*args: str | Path, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], env=env, catch_exceptions=False)


def one_error_line(result: Result, *needles: str) -> str:
    """The output is exactly one ``Error: ...`` line (no traceback), holding every needle."""
    assert result.exit_code == 1, (result.output, result.exception)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), (result.output, result.exception)
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


def show_ref_d(repo: Path) -> str:
    return git("-C", repo, "show-ref", "-d").stdout.decode()


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


def test_import_then_export(data: Path, git_history: Path, tmp_path: Path) -> None:
    result = invoke("import", git_history, "--data", data)
    assert result.exit_code == 0, result.output
    assert re.fullmatch(r"imported source: 7 refs, \d+ objects in \d+\.\d\ds\n", result.output), result.output
    assert DataDirectory(data).repo_names() == ["source"]

    dest = tmp_path / "out.git"
    result = invoke("export", "source.git", dest, "--data", data)
    assert result.exit_code == 0, result.output
    assert result.output == f"exported source to {dest}\n"
    assert git("-C", dest, "fsck", "--strict", "--no-dangling").returncode == 0
    assert show_ref_d(dest) == show_ref_d(git_history)


def test_import_with_a_name(data: Path, git_history: Path) -> None:
    result = invoke("import", git_history, "--name", "team/app", "--data", data)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("imported team/app: ")


def test_the_default_data_directory_comes_from_the_environment(git_history: Path, tmp_path: Path) -> None:
    govc_data = tmp_path / "govc-data"
    assert invoke("import", git_history, env={"GOVC_DATA": str(govc_data)}).exit_code == 0
    assert DataDirectory(govc_data).repo_names() == ["source"]
    xdg = tmp_path / "xdg"
    result = invoke("import", git_history, env={"GOVC_DATA": "", "XDG_DATA_HOME": str(xdg)})
    assert result.exit_code == 0, result.output
    assert DataDirectory(xdg / "govc").repo_names() == ["source"]


def test_default_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GOVC_DATA", str(tmp_path / "a"))
    assert default_data_dir() == tmp_path / "a"
    monkeypatch.delenv("GOVC_DATA")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_data_dir() == tmp_path / "xdg" / "govc"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_data_dir() == tmp_path / "home" / ".local" / "share" / "govc"


def test_importing_twice_fails_with_one_error_line(data: Path, git_history: Path) -> None:
    assert invoke("import", git_history, "--data", data).exit_code == 0
    one_error_line(invoke("import", git_history, "--data", data), "repository 'source' already exists")


def test_import_of_a_directory_that_is_not_a_repository(data: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    one_error_line(invoke("import", plain, "--data", data), "rev-parse")


def test_import_with_a_bad_name(data: Path, git_history: Path) -> None:
    one_error_line(invoke("import", git_history, "--name", "../x", "--data", data), "invalid repository name")


def test_a_foreign_data_directory_is_one_error_line(git_history: Path, tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine\n")
    one_error_line(invoke("import", git_history, "--data", foreign), "not a govc data directory")
    one_error_line(invoke("export", "x", tmp_path / "out", "--data", foreign), "not a govc data directory")
    # serve refuses it before it listens on anything
    one_error_line(invoke("serve", "--data", foreign, "--port", "1"), "not a govc data directory")


def test_a_data_directory_of_another_version(data: Path, git_history: Path) -> None:
    DataDirectory(data).close()
    (data / "govc.json").write_text('{"format": "govc-data", "version": 99}')
    one_error_line(invoke("import", git_history, "--data", data), "version 99")


def test_export_of_an_unknown_repository(data: Path, tmp_path: Path) -> None:
    one_error_line(invoke("export", "nope", tmp_path / "out", "--data", data), "no repository 'nope'")
    assert not (tmp_path / "out").exists()


def test_export_to_a_non_empty_destination(data: Path, git_history: Path, tmp_path: Path) -> None:
    assert invoke("import", git_history, "--data", data).exit_code == 0
    dest = tmp_path / "busy"
    dest.mkdir()
    (dest / "x").write_text("x")
    one_error_line(invoke("export", "source", dest, "--data", data), "exists and is not empty")


@pytest.mark.parametrize(
    "args",
    [
        ("import",),
        ("import", "/definitely/not/here"),
        ("import", "{src}", "--bogus"),
        ("export",),
        ("export", "name"),
        ("serve", "--port", "not-a-number"),
        ("frobnicate",),
    ],
)
def test_usage_errors_exit_2(args: tuple[str, ...], git_history: Path) -> None:
    result = invoke(*(a.replace("{src}", str(git_history)) for a in args))
    assert result.exit_code == 2, result.output
    assert "Error:" in result.output
    assert "Usage:" in result.output


def test_import_of_a_file_is_a_usage_error(git_history: Path, data: Path) -> None:
    result = invoke("import", git_history / "README.md", "--data", data)
    assert result.exit_code == 2, result.output


@pytest.mark.parametrize(
    ("command", "examples"),
    [
        ("serve", ["govc serve --data /srv/govc", "git clone http://"]),
        ("import", ["govc import ~/src/infra", "--name team/app"]),
        ("export", ["govc export infra /tmp/infra.git"]),
    ],
)
def test_help_shows_examples(command: str, examples: list[str]) -> None:
    result = invoke(command, "--help")
    assert result.exit_code == 0, result.output
    assert "Examples:" in result.output
    for example in examples:
        assert example in result.output
    assert invoke(command, "-h").output == result.output


def test_serve_help_lists_its_options() -> None:
    output = invoke("serve", "--help").output
    for option in ("--data", "--memory", "--host", "--port", "--no-auto-create", "--quiet"):
        assert option in output


def test_version_and_group_help() -> None:
    assert invoke("--version").output.strip() == "govc, version 0.1.0"
    output = invoke("--help").output
    for command in ("serve", "import", "export"):
        assert command in output


def test_export_to_a_path_below_a_file_is_one_error_line(
    data: Path, git_history: Path, tmp_path: Path
) -> None:
    assert invoke("import", git_history, "--data", data).exit_code == 0
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = CliRunner().invoke(main, ["export", "source", str(blocker / "out.git"), "--data", str(data)])
    one_error_line(result, str(blocker))


def test_export_to_an_existing_file_is_a_usage_error(data: Path, git_history: Path, tmp_path: Path) -> None:
    assert invoke("import", git_history, "--data", data).exit_code == 0
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert invoke("export", "source", blocker, "--data", data).exit_code == 2
