"""Graceful shutdown of ``govc serve``: SIGTERM in the middle of a slow push.

The push's pack crosses a throttling proxy, so it is still arriving when the signal comes. The
server must turn new connections away (503), let that push finish (git reports success), deliver
the webhook the push caused, exit 0 — and after a restart the ref is there. A delivery that could
not be made before the exit stays in the outbox and goes out after the restart.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import random
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from interop.conftest import TARGET_ENV, Git, http_request
from interop.test_persistence import GovcServe

pytestmark = pytest.mark.skipif(
    (os.environ.get(TARGET_ENV, "govc").strip() or "govc") != "govc",
    reason="stopping and restarting the server is govc's own behaviour",
)

PACK_BYTES = 6 << 20  # incompressible, so the pack is this big
RATE = 2 << 20  # bytes per second the proxy lets through towards the server


class ThrottlingProxy:
    """A TCP proxy on 127.0.0.1 that slows the client-to-server direction to ``rate`` bytes/s."""

    def __init__(self, target_port: int, rate: int) -> None:
        self.target_port = target_port
        self.rate = rate
        self.upstream = 0  # bytes forwarded towards the server so far
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, throttle: bool) -> None:
        started = time.monotonic()
        sent = 0
        try:
            while True:
                data = src.recv(64 << 10)
                if not data:
                    break
                dst.sendall(data)
                if throttle:
                    sent += len(data)
                    self.upstream += len(data)
                    ahead = sent / self.rate - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def close(self) -> None:
        self._closed = True
        self._listener.close()


class Receiver:
    """A webhook receiver: records each delivery; answers ``status`` after ``delay`` seconds."""

    def __init__(self, status: int = 200, delay: float = 0.0) -> None:
        self.status = status
        self.delay = delay
        self.deliveries: list[tuple[str, dict[str, object]]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(outer.delay)
                if outer.status == 200:
                    outer.deliveries.append((self.headers["X-GitHub-Delivery"], json.loads(body)))
                self.send_response(outer.status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/hook"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def cleanup() -> Iterator[list[object]]:
    things: list[object] = []
    yield things
    for thing in reversed(things):
        if isinstance(thing, GovcServe):
            if thing.process is not None:
                thing.stop(signal.SIGKILL)
        else:
            thing.close()  # type: ignore[attr-defined]


def _hook(base: str, repo: str, url: str) -> None:
    body = json.dumps({"config": {"url": url}, "events": ["push"]}).encode()
    status, answer = http_request("POST", f"{base}/api/v1/repos/{repo}/hooks", body,
                                  {"Content-Type": "application/json"})
    assert status == 201, answer


def test_sigterm_lets_a_slow_push_finish_and_drains_webhooks(git_home: Path, tmp_path: Path,
                                                              cleanup: list[object]) -> None:
    git = Git(git_home, 0)
    data = tmp_path / "data"
    server = GovcServe(tmp_path / "server.log", "--data", str(data), "--webhook-allow", "127.0.0.0/8",
                       "--shutdown-timeout", "60", env={"GOVC_WEBHOOK_BACKOFF": "1.5,1.5"})
    cleanup.append(server)
    server.start()
    work = tmp_path / "work"
    git("init", "-q", "-b", "main", work)
    (work / "README").write_text("slow\n")
    git("add", "README", cwd=work)
    git("commit", "-q", "-m", "first", cwd=work)
    git("push", "-q", server.url("slow"), "main", cwd=work)

    delivered, flaky = Receiver(delay=0.5), Receiver(status=503)
    cleanup += [delivered, flaky]
    _hook(server.base_url, "slow", delivered.url)
    _hook(server.base_url, "slow", flaky.url)

    (work / "blob.bin").write_bytes(random.Random(8).randbytes(PACK_BYTES))
    git("add", "blob.bin", cwd=work)
    git("commit", "-q", "-m", "a big one", cwd=work)
    head = git.rev_parse(work, "HEAD")
    proxy = ThrottlingProxy(int(server.base_url.rsplit(":", 1)[1]), RATE)
    cleanup.append(proxy)
    push = subprocess.Popen(git.command("push", "-q", f"http://127.0.0.1:{proxy.port}/slow.git", "main"),
                            cwd=work, env=git.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while proxy.upstream < PACK_BYTES // 4:  # a quarter of the pack is through: mid-push
        assert push.poll() is None, push.communicate()
        assert time.monotonic() < deadline, "the push never got going"
        time.sleep(0.02)
    process = server.process
    assert process is not None
    process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()

    refused = (0, b"")  # new connections are turned away at once...
    while refused[0] != 503 and time.monotonic() - signalled < 5:
        refused = http_request("GET", server.url("slow") + "/info/refs?service=git-upload-pack")
        time.sleep(0.02)
    assert refused == (503, b"govc: shutting down; retry in 5 s\n"), server.output()
    assert http_request("GET", f"{server.base_url}/healthz")[0] == 200  # alive, though not ready
    assert proxy.upstream < PACK_BYTES  # ...while the push is still arriving

    out, err = push.communicate(timeout=60)
    assert push.returncode == 0, (out, err, server.output())
    assert process.wait(timeout=60) == 0, server.output()
    server.process = None
    log = server.output()
    assert "shutting down" in log
    # The webhook for the push that finished during the shutdown went out before the exit
    # (hooks see the updates made after they were created: this push only).
    assert [p["after"] for _, p in delivered.deliveries] == [head], log
    assert "retry 1 in" in log  # the flaky receiver's delivery waits for its retry...

    # After a restart: the ref is durable, and the delivery the flaky receiver refused goes out.
    flaky.status = 200
    server.start()
    assert git.ls_remote(server.url("slow"))["refs/heads/main"] == head
    deadline = time.monotonic() + 20
    while [p["after"] for _, p in flaky.deliveries] != [head]:  # ...in the outbox, until now
        assert time.monotonic() < deadline, (flaky.deliveries, server.output())
        time.sleep(0.05)
    assert server.stop() == 0
