"""Reality sync between independent servers (govc.follow): real govc servers on 127.0.0.1, a
follower in this process (or ``govc follow`` in another), nothing mocked."""

from __future__ import annotations

import asyncio
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import govc
from govc.auth import TokenStore
from govc.follow import FollowConflict, Follower, FollowError, PublishConflict
from govc.registry import Registry
from govc.repository import RefChange, RefEvent
from govc.server import ServerConfig
from storage.disk import DataDirectory

ROOT = Path(__file__).resolve().parents[2]
REALITY = "refs/realities/experiment"


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The servers are on this machine: no HTTP proxy from the environment may get in between."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


def seed(repo: govc.Repository) -> None:
    with repo.transaction("main", author="ops <ops@example.com>") as tx:
        tx.write("app.conf", "workers = 4\n")
        tx.commit("Baseline")
    repo.set_head("refs/heads/main")
    repo.parallel_reality("experiment")


def until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


class Node:
    """An in-process govc server, restartable on the same port."""

    def __init__(self, registry_factory: Callable[[], Registry], config: ServerConfig | None = None) -> None:
        self.factory = registry_factory
        self.config = config
        self.registry = registry_factory()
        self.server = govc.Server(self.registry, config=config)
        self.base = self.server.serve_in_thread()
        self.port = int(self.base.rsplit(":", 1)[1])

    def url(self, name: str = "infra") -> str:
        return f"{self.base}/{name}.git"

    def repo(self, name: str = "infra") -> govc.Repository:
        found = self.registry.get(name)
        assert found is not None
        return found

    def stop(self) -> None:
        self.server.stop()

    def restart(self, registry: Registry | None = None) -> None:
        self.registry = registry if registry is not None else self.factory()
        self.server = govc.Server(self.registry, config=self.config)
        self.server.serve_in_thread(port=self.port)


@pytest.fixture
def node_a() -> Iterator[Node]:
    def registry() -> Registry:
        reg = Registry()
        repo = govc.Repository("infra")
        seed(repo)
        reg.add("infra", repo)
        return reg

    node = Node(registry)
    yield node
    node.stop()


@pytest.fixture
def follow() -> Iterator[Callable[..., Follower]]:
    """``follow(repo, url, reality, **options)``: a follower closed after the test."""
    made: list[Follower] = []

    def make(repo: govc.Repository, url: str, reality: str = "experiment", **options: object) -> Follower:
        follower = repo.subscribe(url, reality, **options)
        made.append(follower)
        return follower

    yield make
    for follower in made:
        follower.close()


# -- following -----------------------------------------------------------------------------------


def test_remote_changes_appear_locally_within_seconds(node_a: Node, follow: Callable[..., Follower]) -> None:
    a = node_a.repo()
    b = govc.Repository("infra")
    events: list[RefEvent] = []
    b.subscribe(events.append)  # the local listener form still works beside the follower
    updates: list[RefChange] = []
    follower = follow(b, node_a.url(), on_update=updates.append)
    assert follower.wait_synced(10)
    assert b.refs.get(REALITY) == a.refs.get(REALITY)
    assert b.reality(REALITY).read("app.conf") == b"workers = 4\n"
    tracking = f"refs/remotes/127.0.0.1-{node_a.port}/infra/experiment"
    assert follower.tracking_ref == tracking and b.refs.get(tracking) == a.refs.get(REALITY)
    assert until(lambda: follower.connected)

    # An API commit on node A, then a push to it (from a third repository, over smart HTTP).
    started = time.monotonic()
    a.reality("experiment").apply({"app.conf": "workers = 8\n"}, "More workers")
    assert until(lambda: b.refs.get(REALITY) == a.refs.get(REALITY))
    c = govc.Repository("c")
    c_follower = follow(c, node_a.url())
    assert c_follower.wait_synced(10)
    c.reality("experiment").apply({"cache.conf": "size = 1g\n"}, "Add a cache")
    assert c.publish(node_a.url(), "experiment").status == "updated"
    assert until(lambda: b.refs.get(REALITY) == a.refs.get(REALITY) == c.refs.get(REALITY))
    assert time.monotonic() - started < 10  # the poll is 30 s: events did this
    assert b.reality("experiment").read("cache.conf") == b"size = 1g\n"
    assert [u.name for u in updates] == [REALITY] * 3 and updates[0].old is None
    follow_events = [e for e in events if e.source == "follow"]
    assert follow_events and all(e.who == f"follow {node_a.url()}" for e in follow_events)
    assert {ch.name for e in follow_events for ch in e.changes} == {REALITY, tracking}
    assert follower.state == "synced" and follower.conflict is None and follower.updates == 3
    assert follower.last_event_id is not None


def test_branch_wins_and_local_name_and_waiting_for_the_remote(node_a: Node,
                                                               follow: Callable[..., Follower]) -> None:
    a = node_a.repo()
    b = govc.Repository("infra")
    main = follow(b, node_a.url(), "main", local="node-a-main")
    assert main.wait_synced(10)
    assert main.remote_ref == "refs/heads/main" and main.local_ref == "refs/heads/node-a-main"
    assert b.refs.get("refs/heads/node-a-main") == a.refs.get("refs/heads/main")

    later = follow(b, node_a.url(), "later")
    assert until(lambda: later.state == "waiting") and not later.wait_synced(0.5)
    a.parallel_reality("later").apply({"new.conf": "x\n"}, "later")
    assert later.wait_synced(10)
    assert b.refs.get("refs/realities/later") == a.refs.get("refs/realities/later")


def test_reconnects_with_last_event_id_and_catches_up(tmp_path: Path,
                                                      follow: Callable[..., Follower]) -> None:
    data = tmp_path / "a"
    seed(govc.Repository.open(data, "infra"))
    node = Node(lambda: Registry(DataDirectory(data)))
    try:
        b = govc.Repository("infra")
        follower = follow(b, node.url())
        assert follower.wait_synced(10) and until(lambda: follower.connected)
        node.repo().reality("experiment").apply({"app.conf": "workers = 6\n"}, "six")
        assert until(lambda: b.reality("experiment").read("app.conf") == b"workers = 6\n")
        seen = follower.last_event_id
        assert seen is not None

        node.stop()
        assert until(lambda: not follower.connected)
        # While node A is down, its data directory moves on (as if another process wrote to it).
        offline = govc.Repository.open(data, "infra")
        offline.reality("experiment").apply({"app.conf": "workers = 12\n"}, "twelve, while away")
        missed = DataDirectory(data).last_event_id()
        assert missed > seen
        node.restart()
        assert until(lambda: b.refs.get(REALITY) == offline.refs.get(REALITY), 20)
        assert until(lambda: follower.connected)
        # The stream resumed after the last event it had seen: the missed event was replayed.
        assert until(lambda: follower.last_event_id == missed)
        node.repo().reality("experiment").apply({"app.conf": "workers = 16\n"}, "sixteen")
        assert until(lambda: b.reality("experiment").read("app.conf") == b"workers = 16\n")
    finally:
        node.stop()


def test_a_restarted_event_log_is_caught_up_by_the_poll(node_a: Node,
                                                        follow: Callable[..., Follower]) -> None:
    """A --memory server's event ids begin again at 1 after a restart, below the follower's
    Last-Event-ID, so the stream stays silent: the periodic poll still catches up."""
    a = node_a.repo()
    b = govc.Repository("infra")
    follower = follow(b, node_a.url(), poll=0.5)
    assert follower.wait_synced(10) and until(lambda: follower.connected)
    for n in range(3):
        a.reality("experiment").apply({"app.conf": f"n = {n}\n"}, f"n{n}")
    assert until(lambda: b.refs.get(REALITY) == a.refs.get(REALITY))
    assert until(lambda: (follower.last_event_id or 0) >= 3)
    node_a.stop()
    assert until(lambda: not follower.connected)
    fresh = Registry()  # same repository, new event log: ids start again at 1
    fresh.add("infra", a)
    node_a.restart(fresh)
    assert until(lambda: follower.connected)
    a.reality("experiment").apply({"app.conf": "after the restart\n"}, "after")
    assert until(lambda: b.reality("experiment").read("app.conf") == b"after the restart\n")


# -- conflicts -----------------------------------------------------------------------------------


def test_local_commits_are_reported_never_overwritten(node_a: Node, follow: Callable[..., Follower]) -> None:
    a = node_a.repo()
    b = govc.Repository("infra")
    conflicts: list[FollowConflict] = []
    follower = follow(b, node_a.url(), on_conflict=conflicts.append)
    assert follower.wait_synced(10)

    # Local commits the remote lacks: "ahead".
    b.reality("experiment").apply({"local.conf": "mine\n"}, "local change")
    local = b.refs.get(REALITY)
    assert until(lambda: follower.state == "conflict")
    with pytest.raises(FollowConflict) as raised:
        follower.wait_synced(2)
    assert raised.value.ahead and raised.value.local == local and raised.value.remote == a.refs.get(REALITY)
    assert "Not overwritten" in str(raised.value)

    # The remote moves too: diverged. The local reality stays; the tracking ref follows the remote.
    a.reality("experiment").apply({"app.conf": "workers = 2\n"}, "remote change")
    assert until(lambda: b.refs.get(follower.tracking_ref or "") == a.refs.get(REALITY))
    assert until(lambda: follower.conflict is not None and not follower.conflict.ahead)
    assert b.refs.get(REALITY) == local
    assert [c.ahead for c in conflicts] == [True, False]

    # Resolved with ordinary tools: merge what the remote has, publish the merge.
    outcome = b.merge(follower.tracking_ref or "", into="experiment", author="ops <ops@example.com>")
    assert outcome.clean
    assert b.publish(node_a.url(), "experiment").status == "updated"
    assert follower.wait_synced(10)
    assert a.refs.get(REALITY) == b.refs.get(REALITY)
    assert a.reality("experiment").read("local.conf") == b"mine\n"
    assert follower.conflict is None


def test_a_local_validator_refuses_a_followed_update(node_a: Node, follow: Callable[..., Follower]) -> None:
    b = govc.Repository("infra")

    @b.validator(branches="experiment")
    def no_debug(change: govc.Change) -> None:
        if b"debug" in (change.files.get("app.conf") or b""):
            raise govc.ValidationError("no debug on experiment")

    follower = follow(b, node_a.url())
    assert follower.wait_synced(10)
    before = b.refs.get(REALITY)
    node_a.repo().reality("experiment").apply({"app.conf": "debug = on\n"}, "debug")
    assert until(lambda: follower.state == "error")
    assert "no debug on experiment" in str(follower.error)
    assert b.refs.get(REALITY) == before
    assert not follower.wait_synced(0.5)


# -- publishing ----------------------------------------------------------------------------------


def test_publish_creates_updates_and_reports_a_stale_remote(node_a: Node) -> None:
    a = node_a.repo()
    b = govc.Repository("infra")
    b.subscribe(node_a.url(), "main", start=False).sync()
    b.parallel_reality("canary").apply({"app.conf": "workers = 5\n"}, "canary")
    created = b.publish(node_a.url(), "canary")
    assert created.status == "created" and created.ref == "refs/realities/canary"
    assert a.refs.get("refs/realities/canary") == b.refs.get("refs/realities/canary")
    assert b.publish(node_a.url(), "canary").status == "up-to-date"

    # Node A moves on; a publish from B (which has not seen that) is a conflict, not an overwrite.
    a.reality("canary").apply({"app.conf": "workers = 7\n"}, "remote canary")
    remote_tip = a.refs.get("refs/realities/canary")
    b.reality("canary").apply({"app.conf": "workers = 6\n"}, "local canary")
    with pytest.raises(PublishConflict) as raised:
        b.publish(node_a.url(), "canary")
    assert raised.value.remote == remote_tip and "force=True" in str(raised.value)
    assert a.refs.get("refs/realities/canary") == remote_tip
    assert b.publish(node_a.url(), "canary", force=True).status == "forced"
    assert a.refs.get("refs/realities/canary") == b.refs.get("refs/realities/canary")

    # The remote's validators still decide.
    @a.validator
    def frozen(change: govc.Change) -> None:
        raise govc.ValidationError("frozen for the release")

    b.reality("canary").apply({"app.conf": "workers = 9\n"}, "nine")
    with pytest.raises(FollowError, match="frozen for the release"):
        b.publish(node_a.url(), "canary")
    with pytest.raises(KeyError):
        b.publish(node_a.url(), "nothing-here")


# -- tokens --------------------------------------------------------------------------------------


def test_tokens_for_fetch_stream_and_push(tmp_path: Path, follow: Callable[..., Follower]) -> None:
    data = tmp_path / "a"
    seed(govc.Repository.open(data, "infra"))
    directory = DataDirectory(data)
    _, secret = TokenStore(directory).create("node-b", access="write")
    node = Node(lambda: Registry(directory), ServerConfig(auth=True))
    try:
        b = govc.Repository("infra")
        refused = follow(b, node.url(), start=False)
        assert refused.sync() == "error" and "authentication" in str(refused.error)

        follower = follow(b, node.url(), token=secret)
        assert follower.wait_synced(10) and until(lambda: follower.connected)  # the stream too
        node.repo().reality("experiment").apply({"app.conf": "workers = 3\n"}, "three")
        assert until(lambda: b.reality("experiment").read("app.conf") == b"workers = 3\n")

        b.reality("experiment").apply({"app.conf": "workers = 4\n"}, "four")
        with_credentials = node.url().replace("http://", f"http://node-b:{secret}@")
        assert b.publish(with_credentials, "experiment").status == "updated"
        assert node.repo().reality("experiment").read("app.conf") == b"workers = 4\n"
        with pytest.raises(FollowError, match="authentication"):
            b.publish(node.url(), "experiment", token="not-a-token", force=True)
    finally:
        node.stop()


# -- the API around it ---------------------------------------------------------------------------


def test_subscribe_dispatches_on_its_arguments(node_a: Node) -> None:
    repo = govc.Repository()
    seen: list[RefEvent] = []
    stop = repo.subscribe(seen.append)
    assert callable(stop)
    with pytest.raises(TypeError):
        repo.subscribe(node_a.url())  # type: ignore[call-overload]
    with pytest.raises(TypeError):
        repo.subscribe(seen.append, "experiment")  # type: ignore[call-overload]
    with pytest.raises(ValueError):
        repo.subscribe("ftp://example.com/x.git", "main")
    with repo.subscribe(node_a.url(), "experiment") as follower:
        assert isinstance(follower, Follower) and follower.wait_synced(10)
    assert follower.state == "closed"
    with pytest.raises(FollowError):
        follower.wait_synced(1)
    stop()


def test_async_use(node_a: Node) -> None:
    async def main() -> bytes | None:
        repo = govc.Repository()
        async with repo.subscribe(node_a.url(), "experiment") as follower:
            assert await follower.wait_synced_async(5)
            return repo.refs.get(REALITY)

    assert asyncio.run(main()) == node_a.repo().refs.get(REALITY)


def test_ephemeral_follow_leaves_nothing_on_disk(tmp_path: Path, node_a: Node,
                                                 follow: Callable[..., Follower]) -> None:
    b = govc.Repository.open(tmp_path / "b", "infra")
    follower = follow(b, node_a.url(), ephemeral=True)
    assert follower.wait_synced(10)
    assert b.reality("experiment").ephemeral
    reopened = govc.Repository.open(tmp_path / "b", "infra")
    assert reopened.refs.get(REALITY) is None and reopened.refs.get(follower.tracking_ref or "") is None


# -- govc follow -----------------------------------------------------------------------------------


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "govc", *args]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower() and not k.startswith("GOVC_")}
    return {**env, "PYTHONPATH": str(ROOT), "no_proxy": "127.0.0.1,localhost"}


def test_cli_follow_into_a_local_server(node_a: Node) -> None:
    a = node_a.repo()
    local = Node(lambda: Registry())
    local.registry.add("infra", govc.Repository("infra"))
    b = local.repo()
    proc = subprocess.Popen(_cli("follow", node_a.url(), "experiment", "--into", local.url(), "--poll", "1"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=ROOT)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line.rstrip()) for line in proc.stdout or []],
                     daemon=True).start()

    def next_line(timeout: float = 20.0) -> str:
        return lines.get(timeout=timeout)

    try:
        created = next_line(30)
        assert created == f"created {REALITY} at {a.refs.get(REALITY).decode()[:8]}"  # type: ignore[union-attr]
        assert b.refs.get(REALITY) == a.refs.get(REALITY)
        old = a.refs.get(REALITY)
        a.reality("experiment").apply({"app.conf": "workers = 8\n"}, "eight")
        new = a.refs.get(REALITY)
        assert next_line() == f"updated {REALITY} {old.decode()[:8]}..{new.decode()[:8]}"  # type: ignore[union-attr]
        assert b.reality("experiment").read("app.conf") == b"workers = 8\n"

        # Someone commits on the local server's copy: the next remote change is a conflict.
        b.reality("experiment").apply({"local.conf": "mine\n"}, "local")
        mine = b.refs.get(REALITY)
        a.reality("experiment").apply({"app.conf": "workers = 9\n"}, "nine")
        conflict = next_line()
        assert conflict.startswith(f"conflict: {local.url()} {REALITY} has commits the remote lacks")
        assert b.refs.get(REALITY) == mine
        once = subprocess.run(_cli("follow", node_a.url(), "experiment", "--into", local.url(), "--once"),
                              capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=30)
        assert once.returncode == 1 and once.stdout.startswith("conflict: "), once.stderr
    finally:
        proc.terminate()
        proc.wait(10)
        local.stop()

    once = subprocess.run(_cli("follow", node_a.url(), "main", "--into", node_a.url(), "--once"),
                          capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=30)
    assert once.returncode == 0, once.stderr
    assert once.stdout.strip() == f"in step: refs/heads/main ({node_a.url()})"
