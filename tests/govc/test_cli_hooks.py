"""``govc hooks set|list``: scripts land where the receive path looks for them, executable."""

from __future__ import annotations

import os
from pathlib import Path

from click.testing import CliRunner

from govc.cli import main
from govc.hooks import hook_paths


def test_hooks_set_installs_an_executable_the_push_path_finds(tmp_path: Path) -> None:
    script = tmp_path / "check.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    data = tmp_path / "data"
    runner = CliRunner()
    result = runner.invoke(main, ["hooks", "set", "team/app", "pre-receive", str(script),
                                  "--data", str(data)])
    assert result.exit_code == 0, result.output
    installed = data / "hooks" / "team/app" / "pre-receive"
    assert installed.read_text() == script.read_text()
    assert os.access(installed, os.X_OK)
    assert hook_paths(data / "hooks", "team/app", "pre-receive") == [installed]
    result = runner.invoke(main, ["hooks", "set", "_global", "post-receive", str(script),
                                  "--data", str(data)])
    assert result.exit_code == 0
    listed = runner.invoke(main, ["hooks", "list", "--data", str(data)])
    assert listed.output.split() == ["_global/post-receive", "team/app/pre-receive"]


def test_hooks_set_refuses_unknown_hooks_and_bad_names(tmp_path: Path) -> None:
    script = tmp_path / "x.sh"
    script.write_text("#!/bin/sh\n")
    runner = CliRunner()
    data = str(tmp_path / "d")
    bad_hook = runner.invoke(main, ["hooks", "set", "app", "pre-commit", str(script), "--data", data])
    assert bad_hook.exit_code == 2  # usage: not a hook govc runs
    bad_repo = runner.invoke(main, ["hooks", "set", "../x", "update", str(script), "--data", data])
    assert bad_repo.exit_code == 1 and "Error:" in bad_repo.output
