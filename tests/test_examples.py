"""The scripts in examples/ run and print what the README says they print.

Each example runs as its own process, as a user would run it: with the project's interpreter, from
an unrelated working directory and with a private HOME (so neither the checkout, ~/.gitconfig nor a
real data directory can make it pass or fail). The assertions pick the lines that carry each
example's point, so a change in the API that breaks an example fails here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"


def run_example(name: str, tmp_path: Path, *args: str) -> str:
    python = VENV_PYTHON if VENV_PYTHON.exists() else Path(sys.executable)
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "GOVC_"))}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), GOVC_DATA=str(tmp_path / "data"),
               PYTHONPATH=str(ROOT), TMPDIR=str(tmp_path))
    proc = subprocess.run([str(python), str(EXAMPLES / name), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{name} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    # Nothing but the temporary directories the example made itself may be left behind.
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name not in ("home",))
    assert not leftovers, f"{name} left {leftovers} in its working directory"
    return proc.stdout


def lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines()]


def test_infrastructure(tmp_path: Path) -> None:
    out = run_example("infrastructure.py", tmp_path)
    got = lines(out)
    assert ("rejected: app/settings.env: plaintext password; nginx/ssl/key.pem: private key in plaintext"
            in got)
    assert ("after the rejection: main has ['app/settings.env', 'nginx/app.conf'], "
            "last commit 'Serve app.example.com over HTTP'") in got
    assert "validate(): ok" in got
    assert ("after the commit: main has ['app/settings.env', 'nginx/app.conf', 'nginx/ssl/cert.pem'], "
            "last commit 'Enable TLS (secrets from vault)'") in got
    assert "bob's commit refused: refs/heads/main moved since the transaction began" in got
    assert "carol's commit (rebase=True) was replayed on top of 'dave: 6 workers'" in got
    assert "then: files ['app/settings.env', 'nginx/app.conf']" in got
    assert "then: nginx/app.conf has 'listen 80;'" in got
    assert "now:  nginx/app.conf has 'listen 443 ssl;'" in got
    assert "then: nginx/ssl/cert.pem did not exist yet" in got
    history = got[got.index("== 7. History of main, newest first") + 1:]
    assert [re.split(r"\s{2,}", h.strip())[1] for h in history] == [
        "carol: renew the certificate", "dave: 6 workers", "alice: 8 workers",
        "Enable TLS (secrets from vault)", "Serve app.example.com over HTTP",
    ]


def test_parallel_testing(tmp_path: Path) -> None:
    out = run_example("parallel_testing.py", tmp_path)
    got = lines(out)
    assert ("created 8 ephemeral realities in one ref update: aggressive, balanced, big-cache, big-pool, "
            "lean, more-workers, patient, wide") in got
    assert "each starts at main: True" in got
    aggressive = next(line for line in got if line.startswith("  aggressive"))
    assert aggressive.endswith("FAIL (too many db connections, timeouts under load)")
    assert sum(1 for line in got if line.endswith("PASS")) == 7
    assert "  every reality saw only its own config: True" in got
    assert "  distinct service.conf across realities: 8 of 8" in got
    assert "  main still has the baseline: True" in got
    assert "promoted 'wide' (score 1136.0): main is now 'try wide'" in got
    assert "  main: 'try wide' by ci <ci+wide@example.com>" in got
    assert "  realities on disk: 0 (they were ephemeral)" in got


def test_event_stream(tmp_path: Path) -> None:
    out = run_example("event_stream.py", tmp_path)
    got = lines(out)
    api_plans = [line for line in got if "[plan]" in line and "source=api" in line]
    assert api_plans == [
        "  [plan] terraform plan on 'main': source=api pusher=ops <ops@example.com> "
        "author=ops <ops@example.com>",
        "  [plan] terraform plan on 'main': source=api pusher=automation <bot@example.com> "
        "author=automation <bot@example.com>",
    ]
    # The README-only commit reached the audit watcher but not the *.tf one.
    readme = got.index("-- API: README.md only (the plan watcher stays quiet)")
    assert got[readme + 1] == ""
    assert "  api   main         by ops <ops@example.com>        1 new commit(s): modified README.md" in got
    if shutil.which("git") is None:
        assert "(git is not installed: skipping the git push part)" in got
        return
    assert "cloned with git: ['README.md', 'main.tf', 'network']" in got
    assert ("  [plan] terraform plan on 'main': source=push pusher=127.0.0.1 author=dev <dev@example.com>"
            in got)
    assert "         .tf changes: added dns.tf, modified main.tf" in got
    assert any("terraform plan on 'feature/cdn': source=push" in line for line in got)
    assert ("  git says: ! [remote rejected] main -> main (sg.tf opens ingress to 0.0.0.0/0)" in got)
    assert "  git exit status: 1; main still at 'Bigger web instance, DNS record'" in got
    audit = got[got.index("audit log (every ref update, in commit order):") + 1:]
    assert [(a.split()[0], a.split()[1]) for a in audit] == [
        ("api", "main"), ("api", "main"), ("api", "main"), ("push", "main"), ("push", "feature/cdn"),
    ]


def test_ab_realities(tmp_path: Path) -> None:
    out = run_example("ab_realities.py", tmp_path)
    got = lines(out)
    assert "  refs: refs/realities/config-a, refs/realities/config-b" in got
    assert "  winner: config-b" in got
    assert "  main is at the winner's commit: True" in got
    assert ("  clean: True, fast-forward: False, parents: 2, message: 'Merge config-a into main'" in got)
    assert "  main      workers=4  cache=lru:1gb  compression=gzip  log_level=info" in got
    assert "  clean: False, commit: None" in got
    assert "  conflict in app.conf (content)" in got
    assert "    ours:   cache = lru:1gb   (main)" in got
    assert "    theirs: cache = lru:512mb   (config-c)" in got
    markers = [line.strip() for line in got if line.strip().startswith("| ")]
    assert markers[markers.index("| cache = lru:1gb") - 1].startswith("| <<<<<<<")
    assert markers[markers.index("| cache = lru:512mb") + 1].startswith("| >>>>>>>")
    assert "  main unchanged: True" in got
    assert "  clean: True, fast-forward: True, main at hotfix: True" in got
    assert "  main      workers=4  cache=lru:1gb  compression=gzip  log_level=warn" in got


@pytest.mark.parametrize("name", ["infrastructure.py", "parallel_testing.py", "event_stream.py",
                                  "ab_realities.py"])
def test_output_is_deterministic(name: str, tmp_path: Path) -> None:
    """What the README shows is what every run prints (no ids, times or ports leak out)."""
    first, second = tmp_path / "1", tmp_path / "2"
    first.mkdir()
    second.mkdir()
    assert run_example(name, first) == run_example(name, second)


def readme_output(name: str) -> str:
    """The ```text block the README's Python API section shows under the heading naming ``name``."""
    text = (ROOT / "README.md").read_text()
    heading = re.search(rf"^#+ .*`examples/{re.escape(name)}`", text, re.MULTILINE)
    assert heading is not None, f"README.md has no heading naming examples/{name}"
    start = text.index("```text\n", heading.end()) + len("```text\n")
    return text[start:text.index("```", start)]


@pytest.mark.parametrize("name", ["infrastructure.py", "parallel_testing.py", "event_stream.py",
                                  "ab_realities.py"])
def test_readme_shows_actual_output(name: str, tmp_path: Path) -> None:
    """The README pastes each example's output; it must stay what the script really prints."""
    if name == "event_stream.py" and shutil.which("git") is None:
        pytest.skip("the README shows the run with git")
    assert readme_output(name) == run_example(name, tmp_path)


def test_distributed_follow_reality(tmp_path: Path) -> None:
    """Two in-process servers: node B follows node A's reality, reports a conflict, publishes back;
    the output is the same on every run and is what the README shows."""
    first, second = tmp_path / "1", tmp_path / "2"
    first.mkdir()
    second.mkdir()
    out = run_example("distributed/follow_reality.py", first)
    got = lines(out)
    assert "  node B's experiment: workers = 8 (same commit as node A: True)" in got
    assert "  node B's watcher saw: experiment: app.conf (follow)" in got
    assert "  follower state: conflict; node B ahead of node A: True" in got
    assert "  wait_synced() raises FollowConflict; Bob's commit is still there: True" in got
    assert "  publish: updated refs/realities/experiment" in got
    assert "  publish refused: PublishConflict (node A has commits node B has not fetched: True)" in got
    assert "  merge: clean=True, parents=2" in got
    assert "  same commit on both nodes: True" in got
    assert run_example("distributed/follow_reality.py", second) == out
    assert readme_output("distributed/follow_reality.py") == out


def test_two_nodes(tmp_path: Path, pg_dsn: str) -> None:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    got = lines(run_example("distributed/two_nodes.py", tmp_path, pg_dsn))
    assert "  cloned from node B: app.conf = 'workers = 4'" in got
    assert "  node B's watcher: ['main: app.conf (push)']" in got
    assert "  alice via node A: committed" in got
    assert "  bob via node B: refused (refs/heads/main moved since the transaction began)" in got
    assert "  both nodes show the same main: True; app.conf = 'workers = 12'" in got
    assert "  force-push to node B: protected branch: refs/heads/main may not be force-pushed" in got
