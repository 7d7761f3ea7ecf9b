"""Durability end to end: push to the real server with real git, stop it (SIGTERM, SIGKILL),
start it again on the same data directory and check with git that everything came back.

Also: ``govc serve --memory`` writes nothing anywhere. Only govc has a data directory to restart
from, so with ``GOVC_INTEROP_TARGET=http-backend`` the module is skipped. The random-kill soak
lives in ``test_crash_safety.py``; these are the deterministic, quick cases.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from interop.conftest import (
    ALL_REFSPECS,
    REPO_ROOT,
    TARGET_ENV,
    Git,
    dates,
    free_port,
    http_request,
    server_refs,
    source_refs,
)

pytestmark = pytest.mark.skipif(
    (os.environ.get(TARGET_ENV, "govc").strip() or "govc") != "govc",
    reason="restarting on a data directory is govc's own behaviour (stock git has no such server)",
)

START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
LOADED = re.compile(r"^loaded (\d+) repositories \((\d+) objects\) in \d+\.\d\ds$", re.MULTILINE)


class GovcServe:
    """``python -m govc serve`` as a process of our own, to stop and start again at will."""

    def __init__(
        self, log_path: Path, *args: str, env: Mapping[str, str] | None = None, cwd: Path = REPO_ROOT
    ) -> None:
        self.args = args
        self.log_path = log_path
        self.env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO_ROOT), **(env or {}))
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None
        self.base_url = ""
        self.offset = 0

    def start(self) -> str:
        """Start, wait for ``/healthz``; returns what the server printed while starting."""
        assert self.process is None, "already running"
        port = free_port()
        cmd = [sys.executable, "-m", "govc", "serve", *self.args, "--host", "127.0.0.1", "--port", str(port)]
        with self.log_path.open("ab") as log:
            self.offset = log.tell()
            self.process = subprocess.Popen(
                cmd,
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.base_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                if http_request("GET", f"{self.base_url}/healthz", timeout=2.0)[0] == 200:
                    return self.output()
            except OSError:
                pass
            time.sleep(0.05)
        self.stop(signal.SIGKILL)
        raise AssertionError(f"govc did not start: {' '.join(cmd)}\n{self.output()}")

    def output(self) -> str:
        with self.log_path.open("rb") as log:
            log.seek(self.offset)
            return log.read().decode("utf-8", "replace")

    def url(self, name: str) -> str:
        return f"{self.base_url}/{name}.git"

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        """Send ``sig`` to the server and wait for it to exit; returns its exit status."""
        process, self.process = self.process, None
        assert process is not None
        if process.poll() is None:
            process.send_signal(sig)
        try:
            return process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)
            raise AssertionError(f"govc did not exit on {sig.name}\n{self.output()}") from None


@pytest.fixture
def git2(git_home: Path) -> Git:
    return Git(git_home, 2)


@pytest.fixture
def servers() -> Iterator[list[GovcServe]]:
    """Servers a test starts are put here, so that a failing test never leaves one running."""
    started: list[GovcServe] = []
    yield started
    for s in started:
        if s.process is not None:
            s.stop(signal.SIGKILL)


def loaded_line(output: str) -> tuple[int, int]:
    match = LOADED.search(output)
    assert match, f"no 'loaded N repositories' line in:\n{output}"
    return int(match[1]), int(match[2])


def check_served(git: Git, url: str, source: Path, dest: Path) -> None:
    """The server's refs, HEAD and objects are the source's, and a mirror clone is fsck-clean."""
    assert server_refs(git, url) == source_refs(git, source)
    assert git.remote_head_symref(url) == "refs/heads/main"
    git("clone", "-q", "--mirror", url, dest)
    git.fsck(dest)
    assert git.show_ref_d(dest) == {
        k: v for k, v in git.show_ref_d(source).items() if k.startswith(("refs/heads/", "refs/tags/"))
    }
    assert git.all_objects(dest) == git.all_objects(source)


def test_pushes_survive_sigkill_and_sigterm(
    git2: Git, history: Path, tmp_path: Path, servers: list[GovcServe]
) -> None:
    git = git2
    data = tmp_path / "data"
    govc = GovcServe(tmp_path / "server.log", "--data", str(data))
    servers.append(govc)
    first = govc.start()
    assert loaded_line(first) == (0, 0)
    assert f"data directory {data}" in first

    git("push", "-q", govc.url("team/app"), *ALL_REFSPECS, cwd=history)
    git("push", "-q", govc.url("solo"), "main:main", cwd=history)
    empty = http_request(
        "POST", f"{govc.base_url}/api/v1/repos", b'{"name": "empty"}', {"Content-Type": "application/json"}
    )
    assert empty[0] == 201, empty

    # kill -9 right after the pushes were acknowledged
    assert govc.stop(signal.SIGKILL) == -signal.SIGKILL
    repos, objects = loaded_line(govc.start())
    assert repos == 3
    solo_objects = git("rev-list", "--objects", "main", cwd=history).stdout.splitlines()
    assert objects == len(git.all_objects(history)) + len(solo_objects)  # counted per repository
    check_served(git, govc.url("team/app"), history, tmp_path / "after-kill")
    assert server_refs(git, govc.url("solo")) == {"refs/heads/main": git.rev_parse(history, "main")}
    assert server_refs(git, govc.url("empty")) == {}

    # more history: a fast-forward, a forced rewrite, a deletion, a new tag; then a clean stop
    git.commit_file(history, "after.txt", "after the restart\n", "c9: after the restart", date=1_700_100_000)
    git("branch", "-f", "feature", "feature~1", cwd=history)
    git("branch", "-D", "release/1.x", cwd=history)
    git("tag", "-a", "v2.0", "-m", "Version 2.0", cwd=history, env=dates(1_700_100_060))
    git("push", "-q", "--force", "--prune", govc.url("team/app"), *ALL_REFSPECS, cwd=history)
    assert govc.stop(signal.SIGTERM) == 0  # a graceful exit

    assert loaded_line(govc.start())[0] == 3
    check_served(git, govc.url("team/app"), history, tmp_path / "after-term")
    govc.stop(signal.SIGTERM)

    # the data directory also reads as git object stores: every object is there for git itself
    gitdir = data / "repos" / "team" / "app.git"
    wanted = "\n".join(git.all_objects(history)) + "\n"
    checked = git("cat-file", "--batch-check", cwd=gitdir, input=wanted).stdout
    assert "missing" not in checked
    for idx in (gitdir / "objects" / "pack").glob("*.idx"):
        git("verify-pack", idx)


def test_a_push_after_restart_builds_on_the_restored_objects(
    git2: Git, history: Path, tmp_path: Path, servers: list[GovcServe]
) -> None:
    """The second push is thin (its deltas name bases the server only has from disk)."""
    git = git2
    govc = GovcServe(tmp_path / "server.log", "--data", str(tmp_path / "data"))
    servers.append(govc)
    govc.start()
    git("push", "-q", govc.url("app"), "main:main", cwd=history)
    govc.stop(signal.SIGKILL)
    govc.start()
    big = (history / "data" / "big.txt").read_text()
    git.commit_file(
        history, "data/big.txt", big.replace("0001", "ONE1", 1), "c9: small edit of big", date=1_700_100_000
    )
    git("push", "-q", govc.url("app"), "main:main", cwd=history)
    govc.stop(signal.SIGKILL)
    govc.start()
    clone = tmp_path / "clone"
    git("clone", "-q", govc.url("app"), clone)
    git.fsck(clone)
    assert git.rev_parse(clone, "HEAD") == git.rev_parse(history, "main")
    assert (clone / "data" / "big.txt").read_text() == (history / "data" / "big.txt").read_text()


def test_serve_memory_writes_nothing(
    git2: Git, history: Path, tmp_path: Path, servers: list[GovcServe]
) -> None:
    git = git2
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    env = {
        "HOME": str(home),
        "XDG_DATA_HOME": str(tmp_path / "xdg-data"),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg-config"),
        "XDG_CACHE_HOME": str(tmp_path / "xdg-cache"),
        "XDG_STATE_HOME": str(tmp_path / "xdg-state"),
        "GOVC_DATA": str(tmp_path / "govc-data"),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    govc = GovcServe(tmp_path / "server.log", "--memory", env=env, cwd=cwd)
    servers.append(govc)
    started = govc.start()
    assert "memory only" in started
    assert not LOADED.search(started)

    git("push", "-q", govc.url("app"), *ALL_REFSPECS, cwd=history)
    check_served(git, govc.url("app"), history, tmp_path / "clone")
    govc.stop(signal.SIGTERM)

    for name in ("xdg-data", "xdg-config", "xdg-cache", "xdg-state", "govc-data"):
        assert not (tmp_path / name).exists(), f"govc serve --memory created {name}"
    assert list(home.iterdir()) == []
    assert list(cwd.iterdir()) == []

    # and nothing comes back: a fresh in-memory server does not know the repository
    govc.start()
    assert http_request("GET", govc.url("app") + "/info/refs?service=git-upload-pack")[0] == 404
    govc.stop(signal.SIGTERM)
