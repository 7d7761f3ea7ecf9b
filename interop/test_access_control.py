"""Every permission path of ``govc serve --auth`` as a git user meets it: git's own credential
prompt (``GIT_ASKPASS``) and credential helper, anonymous reading server-wide and per repository,
grants that widen a token, protected namespaces with named writers, required validators, and the
JSON API's access levels. Real git, real server processes on loopback."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from interop.conftest import REPO_ROOT, TARGET_ENV, Git
from interop.test_auth import AuthServer, serve_with_auth

pytestmark = [
    pytest.mark.skipif(os.environ.get(TARGET_ENV) == "http-backend",
                       reason="tokens are a govc feature; stock git http-backend has none"),
    pytest.mark.parametrize("proto", [2], indirect=True),  # access rules do not depend on it
]


class Server(AuthServer):
    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "govc", *args, "--data", str(self.data)],
                              cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
        if check:
            assert done.returncode == 0, done.stderr + done.stdout
        return done

    def api(self, method: str, path: str, secret: str | None = None,
            body: object | None = None) -> tuple[int, Any]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json",
                     **({"Authorization": f"Bearer {secret}"} if secret else {})})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            raw = e.read()
            return e.code, json.loads(raw) if raw else None


def _serve(tmp_path: Path, *flags: str) -> Iterator[Server]:
    return serve_with_auth(tmp_path, *flags, server_class=Server)


@pytest.fixture
def auth(tmp_path: Path) -> Iterator[Server]:
    yield from _serve(tmp_path)


def _seed(git: Git, server: Server, tmp_path: Path, repo: str, writer: str) -> Path:
    work = tmp_path / f"seed-{repo}"
    git("init", "-q", "-b", "main", work)
    git.commit_file(work, "README", f"{repo}\n", "first")
    git("push", "-q", server.url(repo, writer), "main", cwd=work)
    return work


def test_git_asks_for_credentials_and_a_helper_keeps_them(git: Git, auth: Server, tmp_path: Path) -> None:
    server = auth
    writer = server.token("create", "writer", "--access", "write")
    _seed(git, server, tmp_path, "infra", writer)
    reader = server.token("create", "reader", "--repo", "infra")

    # GIT_ASKPASS: git asks for a user name and a password after the 401 and retries with them
    asked = tmp_path / "asked.txt"
    askpass = tmp_path / "askpass.sh"
    askpass.write_text(f'#!/bin/sh\necho "$1" >> {asked}\n'
                       f'case "$1" in Username*) echo ci ;; *) echo {reader} ;; esac\n')
    askpass.chmod(askpass.stat().st_mode | stat.S_IXUSR)
    env = {"GIT_ASKPASS": str(askpass)}
    clone = tmp_path / "clone"
    git("clone", "-q", server.url("infra"), clone, env=env)
    assert (clone / "README").read_text() == "infra\n"
    prompts = asked.read_text().splitlines()
    assert prompts[0].startswith("Username for 'http://127.0.0.1:") and prompts[1].startswith("Password for")

    # a credential helper stores what worked: the next fetch asks nobody
    store = tmp_path / "credentials"
    git("config", "credential.helper", f"store --file={store}", cwd=clone)
    git("fetch", "-q", "origin", cwd=clone, env=env)
    assert f"ci:{reader}@127.0.0.1" in store.read_text()
    asked.unlink()
    git("fetch", "-q", "origin", cwd=clone, env=env)
    assert not asked.exists()

    # a revoked token: 401 again; git erases it from the helper and gives up
    server.token("revoke", "reader")
    failed = git.fails("fetch", "-q", "origin", cwd=clone, env={"GIT_ASKPASS": "/bin/false"})
    assert "Authentication failed" in failed.stderr or "could not read" in failed.stderr, failed.stderr
    assert reader not in store.read_text()


def test_anonymous_read_per_repository(git: Git, auth: Server, tmp_path: Path) -> None:
    server = auth
    writer = server.token("create", "writer", "--access", "write")
    work = _seed(git, server, tmp_path, "docs", writer)
    _seed(git, server, tmp_path, "secrets", writer)

    denied = git.fails("clone", "-q", server.url("docs"), tmp_path / "denied")
    assert "could not read Username" in denied.stderr, denied.stderr

    assert "anonymous read of docs: on" in server.cli("permission", "anonymous", "docs", "on").stdout
    git("clone", "-q", server.url("docs"), tmp_path / "anon")  # at once, on the running server
    assert (tmp_path / "anon" / "README").read_text() == "docs\n"
    other = git.fails("ls-remote", server.url("secrets"))  # only that repository
    assert "could not read Username" in other.stderr, other.stderr
    git.commit_file(tmp_path / "anon", "README", "vandalised\n", "anonymous change")
    pushed = git.fails("push", "-q", "origin", "main", cwd=tmp_path / "anon")  # reading, never writing
    assert "could not read Username" in pushed.stderr, pushed.stderr
    assert git.ls_remote(server.url("docs", writer))["refs/heads/main"] == git.rev_parse(work, "main")

    server.cli("permission", "anonymous", "docs", "off")
    assert "could not read Username" in git.fails("ls-remote", server.url("docs")).stderr
    status, about = server.api("GET", "/api/v1/repos/docs", writer)
    assert status == 200 and about["anonymous_read"] is False


def test_anonymous_read_server_wide(git: Git, tmp_path: Path) -> None:
    for server in _serve(tmp_path, "--anonymous-read"):
        writer = server.token("create", "writer", "--access", "write")
        _seed(git, server, tmp_path, "a", writer)
        _seed(git, server, tmp_path, "b", writer)
        for repo in ("a", "b"):
            git("clone", "-q", server.url(repo), tmp_path / f"anon-{repo}")
        git.commit_file(tmp_path / "anon-a", "x", "y\n", "anonymous change")
        pushed = git.fails("push", "-q", "origin", "main", cwd=tmp_path / "anon-a")
        assert "could not read Username" in pushed.stderr, pushed.stderr
        assert server.api("POST", "/api/v1/repos", None, {"name": "c"})[0] == 401


def test_grants_widen_a_token(git: Git, auth: Server, tmp_path: Path) -> None:
    server = auth
    admin = server.token("create", "root", "--access", "admin")
    _seed(git, server, tmp_path, "infra", admin)
    alice = server.token("create", "alice", "--repo", "infra")  # read on infra only
    clone = tmp_path / "clone"
    git("clone", "-q", server.url("infra", alice), clone)
    git.commit_file(clone, "README", "alice was here\n", "alice")
    refused = git.fails("push", "-q", "origin", "main", cwd=clone)
    assert "403" in refused.stderr and "has read access" in refused.stderr, refused.stderr

    server.cli("permission", "grant", "alice", "infra", "write")
    git("push", "-q", "origin", "main", cwd=clone)
    assert "alice\tinfra\twrite" in server.cli("permission", "list").stdout
    # ... and through the API, by an administrator: revoke it again
    status, _ = server.api("DELETE", "/api/v1/repos/infra/permissions/alice", admin)
    assert status == 204
    git.commit_file(clone, "README", "again\n", "alice again")
    assert "403" in git.fails("push", "-q", "origin", "main", cwd=clone).stderr
    # an every-repository grant reaches repositories the token itself is not scoped to
    _seed(git, server, tmp_path, "other", admin)
    assert "403" in git.fails("ls-remote", server.url("other", alice)).stderr
    assert server.api("PUT", "/api/v1/permissions/alice", admin, {"access": "read"})[0] == 200
    assert "refs/heads/main" in git.ls_remote(server.url("other", alice))
    # alice may not manage permissions herself
    assert server.api("PUT", "/api/v1/permissions/alice", alice, {"access": "admin"})[0] == 403


def test_protected_namespace_writers_and_required_validators(git: Git, auth: Server, tmp_path: Path) -> None:
    server = auth
    ci = server.token("create", "ci", "--access", "write")
    dev = server.token("create", "dev", "--access", "write")
    work = _seed(git, server, tmp_path, "infra", dev)
    server.cli("protect", "add", "_global", "refs/tags/v*", "--writer", "ci")

    git("tag", "v1.0", cwd=work)
    refused = git.fails("push", server.url("infra", dev), "v1.0", cwd=work)
    expected = "! [remote rejected] v1.0 -> v1.0 (protected ref: only ci may update refs/tags/v1.0)"
    assert expected in refused.stderr, refused.stderr
    git("push", "-q", server.url("infra", ci), "v1.0", cwd=work)
    assert "refs/tags/v1.0" in git.ls_remote(server.url("infra", dev))

    # main requires a pre-receive check: refused while none is installed, accepted once it is
    server.cli("protect", "add", "infra", "refs/heads/main", "--require-validator", "pre-receive")
    git.commit_file(work, "README", "checked\n", "needs a check")
    refused = git.fails("push", server.url("infra", dev), "main", cwd=work)
    assert ("(protected branch: refs/heads/main requires validator pre-receive, "
            "which is not installed on this server)") in refused.stderr, refused.stderr
    hook = tmp_path / "pre-receive"
    hook.write_text("#!/bin/sh\necho checked by pre-receive\n")
    hook.chmod(0o755)
    server.cli("hooks", "set", "infra", "pre-receive", str(hook))
    pushed = git("push", server.url("infra", dev), "main", cwd=work)
    assert "remote: checked by pre-receive" in pushed.stderr
    assert "validators=pre-receive" in server.cli("protect", "list").stdout


def test_api_access_levels(git: Git, auth: Server, tmp_path: Path) -> None:
    server = auth
    root = server.token("create", "root", "--access", "admin")
    _seed(git, server, tmp_path, "infra", root)
    _seed(git, server, tmp_path, "other", root)
    owner = server.token("create", "owner", "--repo", "infra", "--access", "admin")
    writer = server.token("create", "writer", "--repo", "infra", "--access", "write")
    reader = server.token("create", "reader", "--repo", "infra")

    assert server.api("GET", "/api/v1/repos/infra", reader)[0] == 200
    assert server.api("POST", "/api/v1/repos/infra/branches", reader, {"name": "r"})[0] == 403
    assert server.api("POST", "/api/v1/repos/infra/branches", writer, {"name": "w"})[0] == 201
    assert server.api("PATCH", "/api/v1/repos/infra", writer, {"anonymous_read": True})[0] == 403
    assert server.api("GET", "/api/v1/repos/infra/permissions", writer)[0] == 403
    status, body = server.api("PATCH", "/api/v1/repos/infra", owner,
                              {"anonymous_read": True, "default_branch": "w"})
    assert status == 200 and body["anonymous_read"] is True and body["default_branch"] == "w"
    heads = git("ls-remote", "--symref", server.url("infra"), "HEAD").stdout  # anonymous now
    assert heads.startswith("ref: refs/heads/w\tHEAD"), heads
    assert server.api("GET", "/api/v1/repos/infra/permissions", owner)[1]["anonymous_read"] is True
    status, rule = server.api("POST", "/api/v1/repos/infra/protections", owner,
                              {"pattern": "refs/heads/main", "writers": ["ci"]})
    assert status == 201 and rule["writers"] == ["ci"] and rule["allow_force"] is False
    assert server.api("PATCH", "/api/v1/repos/other", owner, {"anonymous_read": True})[0] == 403
    assert server.api("DELETE", "/api/v1/repos/other", owner)[0] == 403
    assert server.api("GET", "/api/v1/tokens", owner)[0] == 403  # tokens: every-repository admins only
    status, made = server.api("POST", "/api/v1/tokens", root, {"name": "bot", "access": "write",
                                                               "repository": "other", "expires": "1d"})
    assert status == 201 and made["expires"] is not None
    git("ls-remote", server.url("other", made["token"]))  # usable at once
    names = {t["name"]: t["status"] for t in server.api("GET", "/api/v1/tokens", root)[1]["tokens"]}
    assert names["bot"] == "active" and all(made["token"] not in json.dumps(t) for t in names)
    assert server.api("DELETE", "/api/v1/tokens/bot", root)[0] == 200
    assert "Authentication failed" in git.fails("ls-remote", server.url("other", made["token"])).stderr
    assert server.api("DELETE", "/api/v1/repos/other", root)[0] == 204
    assert server.api("GET", "/api/v1/openapi.json")[0] == 200  # the description is open


def test_watch_with_a_token(git: Git, auth: Server, tmp_path: Path) -> None:
    writer = auth.token("create", "writer", "--access", "write")
    reader = auth.token("create", "reader", "--repo", "infra")
    work = _seed(git, auth, tmp_path, "infra", writer)
    url = f"http://127.0.0.1:{auth.port}"
    refused = subprocess.run([sys.executable, "-m", "govc", "watch", "infra", "--url", url],
                             cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "HTTP 401" in refused.stderr, refused.stderr
    watcher = subprocess.Popen([sys.executable, "-m", "govc", "watch", "infra", "--url", url, "--since", "0",
                                "--json"], cwd=REPO_ROOT, env=dict(os.environ, GOVC_TOKEN=reader),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert watcher.stdout is not None
        first = json.loads(watcher.stdout.readline())  # the seeding push, replayed from id 0
        assert first["repository"] == "infra" and first["who"] == "writer"
        git.commit_file(work, "README", "next\n", "second")
        git("push", "-q", auth.url("infra", writer), "main", cwd=work)
        second = json.loads(watcher.stdout.readline())
        assert second["changes"][0]["new"] == git.rev_parse(work, "main")
    finally:
        watcher.kill()
        watcher.wait()
