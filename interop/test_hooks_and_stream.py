"""Hook executables and the live event stream, driven by the real git client.

A pre-receive script that refuses a push must show its message in git's output and leave the
refs alone; an SSE client that disconnects and reconnects with Last-Event-ID must miss nothing.
govc only: stock git's server has no event stream and keeps hooks inside each repository.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from pathlib import Path

import pytest

from interop.conftest import Git, Served, Server


@pytest.fixture(autouse=True)
def _govc_only(server: Server) -> None:
    if server.is_reference:
        pytest.skip("govc's hook directory and event stream")


def _hooks_dir(server: Server) -> Path:
    return server.log_path.parent / "data" / "hooks"


def _install(server: Server, repo: str, name: str, script: str) -> Path:
    path = _hooks_dir(server) / repo / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(script)
    path.chmod(0o755)
    return path


def _repo_name(served: Served, server: Server) -> str:
    return served.url.removeprefix(server.base_url + "/").removesuffix(".git")


def test_pre_receive_hook_refusal_reaches_the_git_user(git: Git, served: Served, server: Server,
                                                       tmp_path: Path) -> None:
    name = _repo_name(served, server)
    hook = _install(server, name, "pre-receive", """#!/bin/sh
while read old new ref; do
  echo "checked $ref with $GIT_PUSH_OPTION_COUNT option(s): $GIT_PUSH_OPTION_0"
  git cat-file -t "$new" || exit 3
  case "$ref" in refs/heads/frozen*) echo "frozen branches are read-only" >&2; exit 1;; esac
done
""")
    try:
        before = git.ls_remote(served.url)
        work = tmp_path / "work"
        git("clone", "-q", served.url, str(work))
        git.commit_file(work, "hooked.txt", "x\n", "hooked")
        refused = git("push", "-o", "ci.skip", "origin", "HEAD:refs/heads/frozen", cwd=work, check=False)
        assert refused.returncode != 0
        assert "remote: checked refs/heads/frozen with 1 option(s): ci.skip" in refused.stderr
        assert "remote: commit" in refused.stderr  # the hook could read the quarantined objects
        assert "remote: frozen branches are read-only" in refused.stderr
        assert "! [remote rejected] HEAD -> frozen (pre-receive hook declined)" in refused.stderr
        assert git.ls_remote(served.url) == before
        accepted = git("push", "origin", "HEAD:refs/heads/open", cwd=work)
        assert "remote: checked refs/heads/open with 0 option(s)" in accepted.stderr
        assert "refs/heads/open" in git.ls_remote(served.url)
    finally:
        hook.unlink()


def test_update_and_post_receive_hooks(git: Git, served: Served, server: Server, tmp_path: Path) -> None:
    name = _repo_name(served, server)
    update = _install(server, name, "update", """#!/bin/sh
[ "$1" = refs/heads/blocked ] && { echo "no pushes to $1"; exit 1; }
exit 0
""")
    post = _install(server, name, "post-receive", """#!/bin/sh
while read old new ref; do echo "deployed $ref"; done
""")
    try:
        work = tmp_path / "work"
        git("clone", "-q", served.url, str(work))
        git.commit_file(work, "u.txt", "u\n", "u")
        result = git("push", "origin", "HEAD:refs/heads/blocked", "HEAD:refs/heads/fine", cwd=work,
                     check=False)
        assert "! [remote rejected] HEAD -> blocked (hook declined)" in result.stderr
        assert "remote: no pushes to refs/heads/blocked" in result.stderr
        assert "remote: deployed refs/heads/fine" in result.stderr
        refs = git.ls_remote(served.url)
        assert "refs/heads/fine" in refs and "refs/heads/blocked" not in refs
    finally:
        update.unlink()
        post.unlink()


class _SSEClient:
    """A minimal server-sent-events reader on its own thread: a raw HTTP/1.0 socket, so that
    closing it interrupts a blocked read at once."""

    def __init__(self, base: str, path: str, last_id: int | None = None) -> None:
        host, port = base.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        extra = f"Last-Event-ID: {last_id}\r\n" if last_id is not None else ""
        self.sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\nAccept: text/event-stream\r\n{extra}\r\n"
                          .encode())
        self.events: list[tuple[int, dict[str, object]]] = []
        self.status = b""
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        buffer = b""
        in_body = False
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return
                buffer += chunk
                if not in_body:
                    if b"\r\n\r\n" not in buffer:
                        continue
                    head, buffer = buffer.split(b"\r\n\r\n", 1)
                    self.status = head.split(b"\r\n", 1)[0]
                    in_body = True
                while b"\n\n" in buffer:
                    block, buffer = buffer.split(b"\n\n", 1)
                    fields = dict(line.split(": ", 1) for line in block.decode().split("\n")
                                  if ": " in line and not line.startswith(":"))
                    if "id" in fields and "data" in fields:
                        self.events.append((int(fields["id"]), json.loads(fields["data"])))
        except (OSError, ValueError):
            return

    def wait_for(self, count: int, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.events) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert b" 200 " in self.status + b" ", self.status
        assert len(self.events) >= count, f"got {len(self.events)} events, expected {count}"

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._thread.join(timeout=5)


def test_sse_reconnect_with_last_event_id_misses_nothing(git: Git, served: Served, server: Server,
                                                        tmp_path: Path) -> None:
    name = _repo_name(served, server)
    path = f"/{name}.git/events"
    work = tmp_path / "work"
    git("clone", "-q", served.url, str(work))
    first = _SSEClient(server.base_url, path)
    for i in range(3):
        git.commit_file(work, f"s{i}.txt", f"{i}\n", f"s{i}")
        git("push", "-q", "origin", "HEAD:main", cwd=work)
    first.wait_for(3)
    last_seen = first.events[-1][0]
    first.close()
    for i in range(3, 7):  # while disconnected
        git.commit_file(work, f"s{i}.txt", f"{i}\n", f"s{i}")
        git("push", "-q", "origin", "HEAD:main", cwd=work)
    second = _SSEClient(server.base_url, path, last_id=last_seen)
    second.wait_for(4)
    git.commit_file(work, "live.txt", "live\n", "live")
    git("push", "-q", "origin", "HEAD:main", cwd=work)
    second.wait_for(5)
    second.close()
    ids = [i for i, _ in first.events + second.events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids), ids
    mains = [e["changes"][0]["new"] for _, e in first.events + second.events]  # type: ignore[index]
    pushed = git("rev-list", "--first-parent", "-8", "HEAD", cwd=work).stdout.split()[::-1]
    assert mains == pushed[-8:], "an event was lost or reordered across the reconnect"
    for _, event in second.events:
        assert event["repository"] == name and event["source"] == "push"


def test_sse_filters_by_branch_and_path(git: Git, served: Served, server: Server, tmp_path: Path) -> None:
    name = _repo_name(served, server)
    work = tmp_path / "work"
    git("clone", "-q", served.url, str(work))
    tf = _SSEClient(server.base_url, f"/{name}.git/events?path=*.tf&branch=main")
    everything = _SSEClient(server.base_url, "/events")
    git.commit_file(work, "readme.md", "x\n", "docs")
    git("push", "-q", "origin", "HEAD:main", cwd=work)
    git.commit_file(work, "infra/net.tf", "net {}\n", "tf on main")
    git("push", "-q", "origin", "HEAD:main", cwd=work)
    git.commit_file(work, "infra/db.tf", "db {}\n", "tf elsewhere")
    git("push", "-q", "origin", "HEAD:refs/heads/other", cwd=work)
    everything.wait_for(3)
    time.sleep(0.5)
    tf.close()
    everything.close()
    assert len(tf.events) == 1
    assert tf.events[0][1]["message"] == "push"
