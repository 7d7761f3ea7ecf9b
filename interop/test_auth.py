"""``govc serve --auth`` with the real git: tokens from ``govc token``, given as the password in the URL.

Only for govc (stock ``git http-backend`` has no tokens): skipped with GOVC_INTEROP_TARGET=http-backend.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from interop.conftest import REPO_ROOT, TARGET_ENV, Git, _stop, _wait_ready, free_port

pytestmark = pytest.mark.skipif(os.environ.get(TARGET_ENV) == "http-backend",
                                reason="tokens are a govc feature; stock git http-backend has none")


class AuthServer:
    def __init__(self, data: Path, port: int) -> None:
        self.data = data
        self.port = port

    def token(self, *args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "govc", "token", *args, "--data", str(self.data)],
                              cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr + done.stdout
        return done.stdout.strip()

    def url(self, repo: str, secret: str | None = None) -> str:
        auth = f"x:{secret}@" if secret else ""
        return f"http://{auth}127.0.0.1:{self.port}/{repo}.git"


def serve_with_auth(tmp_path: Path, *flags: str,
                    server_class: type[AuthServer] = AuthServer) -> Iterator[Any]:
    """A real ``govc serve --auth`` process on a fresh data directory, stopped afterwards."""
    data = tmp_path / "data"
    port = free_port()
    log_path = tmp_path / "server.log"
    cmd = [sys.executable, "-m", "govc", "serve", "--data", str(data), "--host", "127.0.0.1",
           "--port", str(port), "--auth", *flags]
    with log_path.open("wb") as log:
        process = subprocess.Popen(cmd, cwd=REPO_ROOT, env=dict(os.environ, PYTHONUNBUFFERED="1"),
                                   stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        _wait_ready(process, f"http://127.0.0.1:{port}/healthz", lambda s: s == 200, log_path, "govc --auth")
        yield server_class(data, port)
    finally:
        _stop(process)


@pytest.fixture
def auth_server(tmp_path: Path) -> Iterator[AuthServer]:
    yield from serve_with_auth(tmp_path)


def test_tokens_with_real_git(git: Git, auth_server: AuthServer, tmp_path: Path) -> None:
    writer = auth_server.token("create", "writer", "--access", "write")
    reader = auth_server.token("create", "reader", "--repo", "infra")

    work = tmp_path / "work"
    git("init", "-q", "-b", "main", work)
    git.commit_file(work, "README", "hello\n", "first")

    # a push with a write token creates the repository
    git("push", "-q", auth_server.url("infra", writer), "main", cwd=work)

    # no credentials: 401, git wants to prompt for them (GIT_TERMINAL_PROMPT=0) and gives up
    failed = git.fails("clone", "-q", auth_server.url("infra"), tmp_path / "anon")
    assert "could not read Username" in failed.stderr, failed.stderr
    assert not (tmp_path / "anon").exists()
    wrong = git.fails("clone", "-q", auth_server.url("infra", "not-a-token"), tmp_path / "wrong")
    assert "Authentication failed" in wrong.stderr, wrong.stderr

    # a read token clones
    clone = tmp_path / "clone"
    git("clone", "-q", auth_server.url("infra", reader), clone)
    assert (clone / "README").read_text() == "hello\n"
    assert git.rev_parse(clone, "HEAD") == git.rev_parse(work, "main")

    # ... but may not push: 403, and git shows govc's reason
    git.commit_file(clone, "README", "changed\n", "second")
    refused = git.fails("push", "-q", "origin", "main", cwd=clone)
    assert "403" in refused.stderr and "has read access" in refused.stderr, refused.stderr
    # ... nor read another repository
    other = git.fails("ls-remote", auth_server.url("elsewhere", reader))
    assert "403" in other.stderr and "limited to repository 'infra'" in other.stderr, other.stderr

    # the write token pushes (and fetches)
    git("push", "-q", auth_server.url("infra", writer), "main", cwd=clone)
    assert git.ls_remote(auth_server.url("infra", writer))["refs/heads/main"] == git.rev_parse(clone, "HEAD")

    # a revoked token stops working at once, on the running server
    auth_server.token("revoke", "reader")
    revoked = git.fails("fetch", "-q", "origin", cwd=clone)
    assert "Authentication failed" in revoked.stderr, revoked.stderr
    listed = auth_server.token("list")
    assert reader not in listed and writer not in listed and "revoked" in listed
