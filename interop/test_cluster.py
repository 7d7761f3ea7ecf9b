"""Several govc nodes on one PostgreSQL database, driven by the real git client.

Three ``python -m govc serve --backend DSN`` processes run on loopback against a real PostgreSQL
server (tests/pgserver.py) and share every repository:

1. a push to one node is clonable from the others at once (a brief poll at most);
2. an SSE stream on one node sees another node's pushes once each, in commit order;
3. a webhook gets exactly one delivery per push although three nodes run delivery workers;
4. two nodes racing to move one ref: exactly one push wins, the other is cleanly rejected, and
   every node shows the winner;
5. a node killed (SIGKILL) during a push leaves nothing half-written, the others keep serving,
   and when it comes back it has caught up, its event stream replaying what it missed;
6. PostgreSQL stopped: /readyz answers 503 and a push fails with a message naming the
   database; PostgreSQL started again: the same nodes, never restarted, serve pushes again;
7. tokens and protected branches made through one node apply on another (a pair with --auth).

Only govc has these: with ``GOVC_INTEROP_TARGET=http-backend`` the module is skipped.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiohttp import web

from interop.conftest import TARGET_ENV, Git, GovcProcess, free_port, http_request
from tests.pgserver import PostgresServer

pytestmark = pytest.mark.skipif(
    os.environ.get(TARGET_ENV, "govc").strip() == "http-backend",
    reason="several nodes on one database is a govc feature",
)

ADMIN = "cluster-admin-token"
Done = subprocess.CompletedProcess[str]
WAIT = 10.0  # the longest any node may take to show another's update (it takes milliseconds)


# -- the nodes --------------------------------------------------------------------------------------


class Node(GovcProcess):
    """One ``govc serve --backend`` process; ``kill()`` and ``start()`` again keep its port."""

    def __init__(self, name: str, dsn: str, workdir: Path, *extra: str) -> None:
        super().__init__(workdir / f"{name}.log", "--backend", dsn, "--data", str(workdir / name),
                         "--webhook-allow", "127.0.0.0/8", "--rate-limit", "0", *extra,
                         env={"GOVC_WEBHOOK_BACKOFF": "0.05,0.5"}, ready_path="/readyz", timeout=30)
        self.name = name
        self.dsn = dsn

    def url(self, repo: str, secret: str | None = None) -> str:
        if secret is None:
            return f"{self.base}/{repo}.git"
        return f"http://user:{secret}@127.0.0.1:{self.port}/{repo}.git"

    def api(self, method: str, path: str, body: object = None,
            token: str | None = None) -> tuple[int, object]:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = None if body is None else json.dumps(body).encode()
        status, raw = http_request(method, f"{self.base}{path}", data, headers)
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode("utf-8", "replace")


def start_all(nodes: list[Node]) -> None:
    for node in nodes:
        node.spawn()
    for node in nodes:
        node.wait_ready()


@pytest.fixture(scope="module")
def database(postgres: PostgresServer) -> Iterator[str]:
    if not postgres.running():
        postgres.start()
    dsn = postgres.create_database()
    yield dsn
    if not postgres.running():
        postgres.start()
    postgres.drop_database(dsn.split("dbname=", 1)[1].split()[0])


@pytest.fixture(scope="module")
def nodes(database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Node]]:
    workdir = tmp_path_factory.mktemp("cluster")
    group = [Node(n, database, workdir) for n in ("a", "b", "c")]
    try:
        start_all(group)
        yield group
    finally:
        for node in group:
            node.stop()


@pytest.fixture(autouse=True)
def _node_logs(request: pytest.FixtureRequest) -> Iterator[None]:
    """What the nodes logged during the test, printed afterwards: pytest shows it only when the
    test failed (the interop server's own log is not theirs)."""
    if "nodes" not in request.fixturenames:
        yield
        return
    group: list[Node] = request.getfixturevalue("nodes")
    marks = {n.name: n.log_path.stat().st_size if n.log_path.exists() else 0 for n in group}
    yield
    for node in group:
        with node.log_path.open("rb") as f:
            f.seek(marks[node.name])
            print(f"--- node {node.name} ---\n{f.read().decode('utf-8', 'replace')[-6000:]}")


@pytest.fixture
def git(git_home: Path) -> Git:
    return Git(git_home, 2)


def eventually(check: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.02)


def work_tree(git: Git, path: Path) -> Path:
    git("init", "-q", "-b", "main", path)
    return path


def heads(git: Git, url: str) -> dict[str, str]:
    result = git("ls-remote", "--heads", url, check=False)
    if result.returncode != 0:
        return {}
    return {name: oid for oid, name in (line.split("\t", 1) for line in result.stdout.splitlines())}


def shows(git: Git, node: Node, repo: str, ref: str, oid: str) -> Callable[[], bool]:
    return lambda: heads(git, node.url(repo)).get(ref) == oid


# -- an SSE reader and a webhook receiver ------------------------------------------------------------


class Stream:
    """Reads ``GET <path>`` of a node as server-sent events on a thread; ``events`` are the data
    objects. Plain HTTP/1.0 on a socket with a short timeout, so closing never waits for the
    server's next keep-alive."""

    def __init__(self, node: Node, path: str) -> None:
        self.events: list[dict[str, object]] = []
        self._sock = socket.create_connection(("127.0.0.1", node.port), timeout=10)
        self._sock.sendall(f"GET {path} HTTP/1.0\r\nAccept: text/event-stream\r\n\r\n".encode())
        self._sock.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        buffer = b""
        while not self._stop.is_set():
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line.startswith(b"data: "):
                    self.events.append(json.loads(line[6:]))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()


class Receiver:
    """A real HTTP server on loopback recording every webhook delivery."""

    def __init__(self) -> None:
        self.port = free_port()
        self.deliveries: list[dict[str, object]] = []
        self._loop = __import__("asyncio").new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.deliveries.append({"guid": request.headers.get("X-GitHub-Delivery"), **json.loads(body)})
        return web.Response(text="ok")

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def __enter__(self) -> Receiver:
        import asyncio

        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        import asyncio

        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


# -- the tests --------------------------------------------------------------------------------------


def test_a_push_to_one_node_is_clonable_from_the_others_at_once(
        nodes: list[Node], git: Git, tmp_path: Path) -> None:
    a, b, c = nodes
    work = work_tree(git, tmp_path / "work")
    first = git.commit_file(work, "README.md", "# shared\n", "first")
    git("push", "-q", a.url("shared"), "main", cwd=work)  # creates the repository on node a
    for node in (b, c):
        eventually(shows(git, node, "shared", "refs/heads/main", first), f"{node.name} shows the push")
    git("clone", "-q", b.url("shared"), tmp_path / "from-b")
    assert git.rev_parse(tmp_path / "from-b", "HEAD") == first
    git.fsck(tmp_path / "from-b")
    # And the other way round, through a third node, with history on top.
    second = git.commit_file(tmp_path / "from-b", "more.txt", "more\n", "second")
    git("push", "-q", c.url("shared"), "main", cwd=tmp_path / "from-b")
    eventually(shows(git, a, "shared", "refs/heads/main", second), "a shows c's push")
    git("pull", "-q", a.url("shared"), "main", cwd=work)
    assert git.rev_parse(work, "HEAD") == second


def test_sse_on_another_node_sees_each_push_exactly_once(nodes: list[Node], git: Git, tmp_path: Path) -> None:
    a, b, c = nodes
    work = work_tree(git, tmp_path / "work")
    c0 = git.commit_file(work, "f.txt", "0\n", "c0")
    git("push", "-q", a.url("streamed"), "main", cwd=work)
    # A stream starts after the last event its node has applied: let b apply the first push.
    eventually(shows(git, b, "streamed", "refs/heads/main", c0), "b shows the first push")
    stream = Stream(b, "/streamed.git/events")
    try:
        time.sleep(0.2)  # the stream is open and waiting
        pushed = []
        for i, node in enumerate((a, c, a), 1):
            pushed.append(git.commit_file(work, "f.txt", f"{i}\n", f"c{i}"))
            git("push", "-q", node.url("streamed"), "main", cwd=work)
        eventually(lambda: len(stream.events) >= 3, "b's stream has the three pushes")
        time.sleep(0.5)  # any duplicate would arrive by now
        news = [str(e["changes"][0]["new"]) for e in stream.events]  # type: ignore[index]
        assert news == pushed
        ids = [int(e["id"]) for e in stream.events]  # type: ignore[call-overload]
        assert ids == sorted(set(ids))
    finally:
        stream.close()


def test_one_webhook_delivery_per_push_across_three_nodes(
        nodes: list[Node], git: Git, tmp_path: Path) -> None:
    a, b, c = nodes
    assert a.api("POST", "/api/v1/repos", {"name": "hooked"})[0] == 201
    with Receiver() as receiver:
        status, hook = b.api("POST", "/api/v1/repos/hooked/hooks", {
            "config": {"url": f"http://127.0.0.1:{receiver.port}/hook", "content_type": "json"},
            "events": ["push"]})
        assert status == 201, hook
        work = work_tree(git, tmp_path / "work")
        pushed = []
        for i, node in enumerate((a, b, c, a, c), 1):
            pushed.append(git.commit_file(work, "f.txt", f"{i}\n", f"c{i}"))
            git("push", "-q", node.url("hooked"), "main", cwd=work)
        eventually(lambda: len(receiver.deliveries) >= len(pushed), "a delivery per push")
        time.sleep(1.5)  # three workers poll the outbox; a duplicate would have come by now
        assert sorted(str(d["after"]) for d in receiver.deliveries) == sorted(pushed)
        assert len({d["guid"] for d in receiver.deliveries}) == len(pushed)


def test_racing_pushes_to_one_ref_have_exactly_one_winner(
        nodes: list[Node], git: Git, tmp_path: Path) -> None:
    a, b, _ = nodes
    base = work_tree(git, tmp_path / "base")
    git.commit_file(base, "f.txt", "base\n", "base")
    git("push", "-q", a.url("raced"), "main", cwd=base)
    eventually(lambda: bool(heads(git, b.url("raced"))), "b knows the repository")
    for round_ in range(4):
        tips, works = [], []
        for side in ("x", "y"):
            work = tmp_path / f"{side}{round_}"
            git("clone", "-q", a.url("raced"), work)
            tips.append(git.commit_file(work, f"{side}.txt", f"{side} {round_}\n", f"{side} {round_}"))
            works.append(work)
        results: list[Done | None] = [None, None]

        def push(i: int, node: Node, work: Path, results: list[Done | None]) -> None:
            results[i] = subprocess.run(git.command("push", node.url("raced"), "main"), cwd=work,
                                        env=git.env, capture_output=True, text=True, timeout=60)

        threads = [threading.Thread(target=push, args=(i, n, works[i], results))
                   for i, n in enumerate((a, b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        done = [r for r in results if r is not None]
        winners = [i for i, r in enumerate(done) if r.returncode == 0]
        assert len(winners) == 1, [r.stderr for r in done]
        loser = done[1 - winners[0]]
        # Refused by the node's compare-and-swap, or by the client itself if the loser's node had
        # already shown it the winner: both are git's ordinary, clean rejections.
        assert any(s in loser.stderr for s in ("failed to update ref", "cannot lock ref", "fetch first",
                                               "non-fast-forward", "stale info")), loser.stderr
        winner_tip = tips[winners[0]]
        for node in (a, b):
            eventually(shows(git, node, "raced", "refs/heads/main", winner_tip),
                       f"{node.name} shows the winner")


def test_a_node_killed_mid_push_loses_nothing_and_catches_up(
        nodes: list[Node], git: Git, tmp_path: Path) -> None:
    a, b, c = nodes
    work = work_tree(git, tmp_path / "work")
    acknowledged = git.commit_file(work, "small.txt", "small\n", "acknowledged")
    git("push", "-q", c.url("crashy"), "main", cwd=work)
    eventually(shows(git, a, "crashy", "refs/heads/main", acknowledged), "a shows c's push")
    # A push big enough to be under way when the node dies.
    (work / "big.bin").write_bytes(os.urandom(16 << 20))
    git("add", "big.bin", cwd=work)
    git("commit", "-q", "-m", "big", cwd=work)
    big = git.rev_parse(work, "HEAD")
    pusher = subprocess.Popen(git.command("push", c.url("crashy"), "main"), cwd=work, env=git.env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(0.6)
    c.kill()
    pusher.communicate(timeout=60)
    # Whatever the moment: the ref is where it was or where the push put it, and whatever it
    # names is whole.
    for node in (a, b):
        tip = heads(git, node.url("crashy"))["refs/heads/main"]
        assert tip in (acknowledged, big)
        clone = tmp_path / f"clone-{node.name}"
        git("clone", "-q", node.url("crashy"), clone)
        git.fsck(clone)
    # While c is down the others go on, and c must catch up with what they did.
    missed = []
    for i in range(2):
        git("fetch", "-q", a.url("crashy"), "main", cwd=work)
        git("reset", "-q", "--hard", "FETCH_HEAD", cwd=work)
        missed.append(git.commit_file(work, "after.txt", f"{i}\n", f"while c was down {i}"))
        git("push", "-q", a.url("crashy"), "main", cwd=work)
    c.start()
    assert heads(git, c.url("crashy"))["refs/heads/main"] == missed[-1]  # loaded at start-up
    replay = Stream(c, "/crashy.git/events?since=0")
    try:
        eventually(lambda: [str(e["changes"][0]["new"]) for e in replay.events][-2:] == missed,  # type: ignore[index]
                   "c's stream replays the pushes it missed")
    finally:
        replay.close()
    git("clone", "-q", c.url("crashy"), tmp_path / "from-c")
    git.fsck(tmp_path / "from-c")


def test_postgres_down_means_clear_errors_and_service_resumes_by_itself(
        nodes: list[Node], git: Git, tmp_path: Path, postgres: PostgresServer) -> None:
    a, b, _ = nodes
    work = work_tree(git, tmp_path / "work")
    git.commit_file(work, "f.txt", "before\n", "before")
    git("push", "-q", a.url("outage"), "main", cwd=work)
    postgres.stop()
    try:
        eventually(lambda: http_request("GET", f"{a.base}/readyz", timeout=10)[0] == 503, "a is not ready")
        status, body = http_request("GET", f"{b.base}/readyz", timeout=10)
        assert status == 503 and b"PostgreSQL unreachable" in body, body
        git.commit_file(work, "f.txt", "during\n", "during")
        failed = git.fails("push", a.url("outage"), "main", cwd=work)
        assert "PostgreSQL unreachable" in failed.stderr, failed.stderr
        # Reads do not need the database: clones are served from memory meanwhile.
        git("clone", "-q", b.url("outage"), tmp_path / "during-outage")
    finally:
        postgres.start()
    for node in (a, b):
        eventually(lambda n=node: http_request("GET", f"{n.base}/readyz", timeout=10)[0] == 200,
                   f"{node.name} is ready again", timeout=20)
    git("push", "-q", a.url("outage"), "main", cwd=work)
    after = git.rev_parse(work, "HEAD")
    eventually(shows(git, b, "outage", "refs/heads/main", after), "b follows again")


def test_tokens_and_protections_made_on_one_node_apply_on_another(
        postgres: PostgresServer, git: Git, tmp_path: Path) -> None:
    if not postgres.running():
        postgres.start()
    dsn = postgres.create_database()
    pair = [Node(n, dsn, tmp_path, "--auth", "--admin-token", ADMIN) for n in ("p", "q")]
    try:
        start_all(pair)
        p, q = pair
        status, made = p.api("POST", "/api/v1/tokens", {"name": "ci", "access": "write"}, token=ADMIN)
        assert status == 201, made
        secret = str(made["token"])  # type: ignore[index]
        work = work_tree(git, tmp_path / "work")
        first = git.commit_file(work, "f.txt", "1\n", "first")
        git("push", "-q", q.url("guarded", secret), "main", cwd=work)  # a token made on p, used on q
        assert git.fails("push", q.url("guarded", "not-a-token"), "main", cwd=work).returncode != 0
        status, rule = p.api("POST", "/api/v1/repos/guarded/protections",
                             {"pattern": "refs/heads/main"}, token=ADMIN)
        assert status == 201, rule
        git("commit", "-q", "--amend", "-m", "rewritten", cwd=work)
        refused = git.fails("push", "--force", q.url("guarded", secret), "main", cwd=work)
        assert "protected branch" in refused.stderr, refused.stderr
        assert heads(git, p.url("guarded", secret))["refs/heads/main"] == first
    finally:
        for node in pair:
            node.stop()
        postgres.drop_database(dsn.split("dbname=", 1)[1].split()[0])
