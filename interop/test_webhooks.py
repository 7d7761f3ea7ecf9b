"""Webhooks end to end: the real ``govc serve`` process, stock ``git push`` and a real HTTP receiver.

1. a push delivers one signed payload in GitHub's ``push`` format;
2. the receiver is down during a burst of pushes and the server is killed (SIGKILL) and restarted
   half-way: once the receiver is back, every push's event has arrived (duplicates allowed, gaps
   not);
3. a receiver answering 429 with ``Retry-After: 1`` is retried no sooner than a second later;
4. a receiver that takes 5 s to answer does not slow pushes down.

The server runs with ``--webhook-allow 127.0.0.0/8`` (the receiver is on loopback) and
``GOVC_WEBHOOK_BACKOFF=0.05,0.5`` (retries after 50 ms, doubling, at most 0.5 s apart).
Only govc has webhooks: with ``GOVC_INTEROP_TARGET=http-backend`` these tests skip.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from interop.conftest import TARGET_ENV, Git, GovcProcess, free_port, http_request

pytestmark = pytest.mark.skipif(
    os.environ.get(TARGET_ENV, "govc").strip() == "http-backend",
    reason="webhooks are a govc feature; stock git http-backend has none",
)

SECRET = "It's a Secret to Everybody"
BACKOFF = "0.05,0.5"


def verify(body: bytes, header: str | None) -> bool:
    """The receiver's side of ``X-Hub-Signature-256``, written out rather than imported."""
    import hashlib
    import hmac

    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return header is not None and hmac.compare_digest(expected, header)


# -- a real receiver, on its own thread and event loop --------------------------------------------


@dataclass(frozen=True)
class Received:
    path: str
    at: float
    headers: dict[str, str]
    body: bytes
    verified: bool

    @property
    def payload(self) -> dict:
        return json.loads(self.body)


class Receiver:
    """aiohttp on 127.0.0.1: ``/ok`` answers 200, ``/slow`` after 5 s, ``/limited`` 429 with
    ``Retry-After: 1`` to the first request of each delivery id, then 200."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._runner: web.AppRunner | None = None
        self._limited: set[str] = set()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        record = Received(request.path, time.monotonic(), dict(request.headers), body,
                          verify(body, request.headers.get("X-Hub-Signature-256")))
        with self._lock:
            self.requests.append(record)
        if request.path == "/slow":
            await asyncio.sleep(5)
        if request.path == "/limited":
            guid = request.headers.get("X-GitHub-Delivery", "")
            if guid not in self._limited:
                self._limited.add(guid)
                return web.Response(status=429, headers={"Retry-After": "1"}, text="slow down")
        return web.Response(text="ok")

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def start(self) -> Receiver:
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)

    def close(self) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def received(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def wait(self, what: Callable[[], bool], timeout: float, describe: Callable[[], str]) -> None:
        deadline = time.monotonic() + timeout
        while not what():
            if time.monotonic() > deadline:
                raise AssertionError(describe())
            time.sleep(0.02)


# -- the govc server process ---------------------------------------------------------------------


class Govc(GovcProcess):
    """``python -m govc serve`` on a data directory that outlives restarts."""

    def __init__(self, workdir: Path) -> None:
        self.data = workdir / "data"
        super().__init__(workdir / "server.log", "--data", str(self.data), "--webhook-allow", "127.0.0.0/8",
                         env={"GOVC_WEBHOOK_BACKOFF": BACKOFF})

    def api(self, method: str, path: str, body: object = None) -> tuple[int, object]:
        data = None if body is None else json.dumps(body).encode()
        status, raw = http_request(method, f"{self.base}{path}", data, {"Content-Type": "application/json"})
        return status, json.loads(raw) if raw else None

    def repo_with_hook(self, name: str, url: str) -> int:
        status, answer = self.api("POST", "/api/v1/repos", {"name": name})
        assert status == 201, answer
        status, hook = self.api("POST", f"/api/v1/repos/{name}/hooks", {
            "config": {"url": url, "content_type": "json", "secret": SECRET}, "events": ["push"]})
        assert status == 201, hook
        return int(hook["id"])  # type: ignore[index]


@pytest.fixture(scope="module")
def govc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Govc]:
    server = Govc(tmp_path_factory.mktemp("webhooks"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    try:
        yield r
    finally:
        r.close()


@pytest.fixture
def pusher(git_home: Path, tmp_path: Path, govc: Govc) -> Callable[[str], Callable[..., str]]:
    """``pusher(name)`` -> ``push(message, *options)``: commit a file and push main; returns the id."""
    git = Git(git_home, 0)

    def for_repo(name: str) -> Callable[..., str]:
        work = tmp_path / name
        git("init", "-q", str(work))
        counter = iter(range(1, 1_000_000))

        def push(message: str, *options: str) -> str:
            n = next(counter)
            sha = git.commit_file(work, f"files/{n}.txt", f"{message}\n", message)
            flags = [a for o in options for a in ("-o", o)]
            git("push", "-q", *flags, f"{govc.base}/{name}.git", "HEAD:refs/heads/main", cwd=work)
            return sha

        return push

    return for_repo


# -- the tests -----------------------------------------------------------------------------------


def test_a_push_delivers_one_signed_github_payload(govc: Govc, receiver: Receiver, pusher) -> None:
    hook = govc.repo_with_hook("team/hooked", receiver.url("/ok"))
    sha = pusher("team/hooked")("first", "ci.skip")
    receiver.wait(lambda: len(receiver.received("/ok")) >= 1, 10,
                  lambda: f"no delivery arrived\n{govc.log()}")
    time.sleep(0.3)  # nothing else should follow
    [got] = receiver.received("/ok")
    assert got.verified, got.headers
    assert got.headers["X-GitHub-Event"] == got.headers["X-Govc-Event"] == "push"
    assert got.headers["X-GitHub-Delivery"] == got.headers["X-Govc-Delivery"]
    assert got.headers["User-Agent"] == "govc-Hookshot/0.1"
    assert got.headers["Content-Type"] == "application/json"
    payload = got.payload
    assert payload["ref"] == "refs/heads/main"
    assert (payload["before"], payload["after"]) == ("0" * 40, sha)
    assert (payload["created"], payload["deleted"], payload["forced"]) == (True, False, False)
    assert [c["id"] for c in payload["commits"]] == [sha]
    assert payload["commits"][0]["added"] == ["files/1.txt"]
    assert payload["commits"][0]["author"] == {"name": "A U Thor", "email": "author@example.com"}
    assert payload["head_commit"]["id"] == sha
    assert payload["repository"]["full_name"] == "team/hooked"
    assert payload["repository"]["name"] == "hooked"
    assert payload["repository"]["clone_url"] == f"{govc.base}/team/hooked.git"
    assert payload["pusher"]["name"]
    assert payload["push_options"] == ["ci.skip"]

    status, deliveries = govc.api("GET", f"/api/v1/repos/team/hooked/hooks/{hook}/deliveries")
    assert status == 200
    [d] = deliveries  # type: ignore[misc]
    assert (d["status"], d["status_code"], d["attempts"]) == ("delivered", 200, 1)
    assert d["guid"] == got.headers["X-GitHub-Delivery"]


def test_receiver_down_and_server_killed_mid_burst_loses_nothing(govc: Govc, pusher) -> None:
    down = Receiver().start()
    try:
        govc.repo_with_hook("burst", down.url("/ok"))
        push = pusher("burst")
        shas = [push("before the outage")]
        down.wait(lambda: len(down.received("/ok")) == 1, 10, lambda: f"no delivery arrived\n{govc.log()}")
        down.stop()  # from here every attempt is refused
        shas += [push(f"burst {i}") for i in range(10)]
        govc.kill()
        govc.start()
        shas += [push(f"burst {i}") for i in range(10, 20)]
        time.sleep(0.3)
        assert len(down.received("/ok")) == 1
        down.start()

        def afters() -> set[str]:
            return {r.payload["after"] for r in down.received("/ok")}

        down.wait(lambda: afters() >= set(shas), 30,
                  lambda: f"missing {len(set(shas) - afters())} of {len(shas)} events\n{govc.log()}")
        assert all(r.verified for r in down.received("/ok"))
        # Each event is its own delivery: the pushes' before/after chain has no hole.
        chain = {r.payload["before"]: r.payload["after"] for r in down.received("/ok")}
        tip = "0" * 40
        for sha in shas:
            assert chain.get(tip) == sha
            tip = sha
    finally:
        down.close()


def test_429_retry_after_is_honoured(govc: Govc, receiver: Receiver, pusher) -> None:
    govc.repo_with_hook("limited", receiver.url("/limited"))
    pusher("limited")("rate limited")
    receiver.wait(lambda: len(receiver.received("/limited")) >= 2, 15,
                  lambda: f"no retry after the 429\n{govc.log()}")
    first, second = receiver.received("/limited")[:2]
    assert first.headers["X-GitHub-Delivery"] == second.headers["X-GitHub-Delivery"]
    assert second.at - first.at >= 1.0


def test_slow_receiver_does_not_slow_pushes(govc: Govc, receiver: Receiver, pusher) -> None:
    govc.repo_with_hook("slowpoke", receiver.url("/slow"))
    push = pusher("slowpoke")
    push("warm up")  # the repository exists from here on; its delivery now takes 5 s to answer
    receiver.wait(lambda: len(receiver.received("/slow")) >= 1, 10,
                  lambda: f"no delivery arrived\n{govc.log()}")
    started = time.monotonic()
    times = []
    for i in range(6):
        t = time.monotonic()
        push(f"while the receiver sleeps {i}")
        times.append(time.monotonic() - t)
    total = time.monotonic() - started
    assert total < 4.0, times  # all six pushes finished while the first delivery was still waiting
    assert max(times) < 2.0, times
