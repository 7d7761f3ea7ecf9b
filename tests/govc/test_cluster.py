"""Nodes sharing one PostgreSQL database, in one process: two :class:`Registry` objects on two
:class:`PostgresDirectory` objects are two nodes (each with its own pool, memory and follower),
against a real server (tests/pgserver.py).

What is checked here, below the HTTP layer: an update made on one node reaches the other's memory
and listeners exactly once, every node's listeners get events in the log's order, the loser of a
race is refused and then shows the winner, repositories created and deleted elsewhere appear and
go, packs another node compacted are replaced, and the site database (tokens, grants,
protections, webhooks) is one for the whole cluster, its compare-and-sets exactly-once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from govc.auth import TokenStore
from govc.maintenance import compact
from govc.permissions import Permissions
from govc.protection import ProtectionStore
from govc.registry import Registry, RepositoryExists
from govc.repository import RefEvent, Repository
from govc.webhooks import WebhookStore
from storage.errors import StaleRef
from storage.interfaces import RefUpdate
from storage.postgres import PostgresDirectory, RepositoryDeleted
from storage.sitedb import POSTGRESQL, SQLITE, portable_ddl, to_pyformat

MAIN = "refs/heads/main"


def eventually(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.01)


@pytest.fixture
def nodes(pg_dsn: str) -> Iterator[tuple[Registry, Registry]]:
    made: list[tuple[Registry, PostgresDirectory]] = []

    def node() -> Registry:
        directory = PostgresDirectory(pg_dsn)
        registry = Registry(directory)
        assert registry.cluster is not None
        registry.cluster.poll = 0.2  # the safety net, sooner than in production
        registry.cluster.start()
        made.append((registry, directory))
        return registry

    try:
        yield node(), node()
    finally:
        for registry, directory in made:
            assert registry.cluster is not None
            registry.cluster.close()
            directory.close()


def commit(repo: Repository, path: str, content: bytes, branch: str = "main") -> bytes:
    with repo.transaction(branch, author="T <t@example.com>") as tx:
        tx.write(path, content)
        return tx.commit(f"write {path}").oid.encode()


def caught_up(*registries: Registry) -> None:
    for registry in registries:
        assert registry.cluster is not None and registry.cluster.catch_up(10)


def test_an_update_on_one_node_reaches_the_other_once(nodes: tuple[Registry, Registry]) -> None:
    a, b = nodes
    repo_a = a.create("app")
    seen_a: list[RefEvent] = []
    repo_a.subscribe(seen_a.append)
    first = commit(repo_a, "a.txt", b"from a")
    caught_up(b)
    repo_b = b.get("app")
    assert repo_b is not None and repo_b.refs.get(MAIN) == first
    assert repo_b.trees.read(repo_b.graph.commit(first).tree, "a.txt") == b"from a"
    assert [e.new for e in repo_b.refs.reflog(MAIN)] == [first]
    seen_b: list[RefEvent] = []
    repo_b.subscribe(seen_b.append)
    second = commit(repo_b, "b.txt", b"from b")
    caught_up(a, b)
    assert repo_a.refs.get(MAIN) == second
    assert [(e.id, e.changes[0].new) for e in seen_a] == [(1, first), (2, second)]
    assert [(e.id, e.changes[0].new) for e in seen_b] == [(2, second)]
    assert seen_a[1].who == "T <t@example.com>" and seen_a[1].source == "api"
    assert [e.id for e in a.events.since(0)] == [e.id for e in b.events.since(0)] == [1, 2]


def test_every_node_hands_out_events_in_log_order(nodes: tuple[Registry, Registry]) -> None:
    a, b = nodes
    a.create("busy")
    eventually(lambda: b.get("busy") is not None, "b serves the new repository")
    seen: dict[str, list[int]] = {"a": [], "b": []}
    for name, registry in (("a", a), ("b", b)):
        repo = registry.get("busy")
        assert repo is not None
        repo.subscribe(lambda e, n=name: seen[n].append(e.id))

    def writer(registry: Registry, branch: str) -> None:
        repo = registry.get("busy")
        assert repo is not None
        for i in range(8):
            commit(repo, "f.txt", f"{branch} {i}".encode(), branch)

    threads = [threading.Thread(target=writer, args=(a, "one")),
               threading.Thread(target=writer, args=(b, "two"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    caught_up(a, b)
    assert len(seen["a"]) == len(seen["b"]) == 16
    assert seen["a"] == seen["b"] == sorted(seen["a"])


def test_the_loser_of_a_race_is_refused_and_then_shows_the_winner(nodes: tuple[Registry, Registry]) -> None:
    a, b = nodes
    repo_a = a.create("raced")
    base = commit(repo_a, "f.txt", b"base")
    caught_up(b)
    repo_b = b.get("raced")
    assert repo_b is not None
    # A commit of each node's own, on a side branch, that each will try to put on main.
    tips = {"a": commit(repo_a, "f.txt", b"a", "x"), "b": commit(repo_b, "f.txt", b"b", "y")}
    caught_up(a, b)
    winner_tip = base
    outcomes: dict[str, str] = {}
    barrier = threading.Barrier(2)

    def move(name: str, repo: Repository, target: bytes) -> None:
        barrier.wait()
        try:
            repo.update_refs([RefUpdate(MAIN, target, winner_tip)], who=name, message="race", source="api")
            outcomes[name] = "won"
        except StaleRef:
            outcomes[name] = "lost"

    threads = [threading.Thread(target=move, args=("a", repo_a, tips["a"])),
               threading.Thread(target=move, args=("b", repo_b, tips["b"]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes.values()) == ["lost", "won"]
    winner = next(n for n, o in outcomes.items() if o == "won")
    expected = tips[winner]
    caught_up(a, b)
    assert repo_a.refs.get(MAIN) == repo_b.refs.get(MAIN) == expected


def test_repositories_created_and_deleted_elsewhere_come_and_go(nodes: tuple[Registry, Registry]) -> None:
    a, b = nodes
    a.create("empty-one")  # no event: only a notification tells b
    eventually(lambda: b.get("empty-one") is not None, "b serves the new repository")
    with pytest.raises(RepositoryExists):
        b.create("empty-one")
    repo_b = b.get("empty-one")
    assert repo_b is not None
    repo_b.set_head("refs/heads/trunk")
    eventually(lambda: a.get("empty-one").head_target == "refs/heads/trunk",  # type: ignore[union-attr]
               "a sees HEAD moved")
    a.delete("empty-one")
    eventually(lambda: b.get("empty-one") is None, "b stops serving the deleted repository")
    # A commit through a stale handle on a deleted repository fails instead of resurrecting it.
    with pytest.raises(RepositoryDeleted):
        commit(repo_b, "f.txt", b"too late")


def test_packs_compacted_on_one_node_are_replaced_on_the_other(nodes: tuple[Registry, Registry]) -> None:
    a, b = nodes
    repo_a = a.create("packed")
    for i in range(4):
        commit(repo_a, f"f{i}.txt", f"{i}".encode())
    caught_up(b)
    repo_b = b.get("packed")
    assert repo_b is not None and len(repo_b.objects.packs) == 4
    assert compact(repo_a, threshold=2)
    last = commit(repo_a, "after.txt", b"after")
    caught_up(b)
    assert repo_b.refs.get(MAIN) == last
    stored = set(repo_b.backend.pack_names())  # type: ignore[attr-defined]
    assert {p.name for p in repo_b.objects.packs} == stored and len(stored) == 2
    for oid in repo_a.objects.iter_oids():
        assert repo_b.objects.has(oid)


def test_a_node_started_later_loads_the_state_and_follows(
        nodes: tuple[Registry, Registry], pg_dsn: str) -> None:
    a, _ = nodes
    repo_a = a.create("late")
    commit(repo_a, "f.txt", b"1")
    directory = PostgresDirectory(pg_dsn)
    late = Registry(directory)
    assert late.cluster is not None
    seen: list[int] = []
    late_repo = late.get("late")
    assert late_repo is not None
    late_repo.subscribe(lambda e: seen.append(e.id or 0))
    late.cluster.start()
    try:
        tip = commit(repo_a, "f.txt", b"2")
        assert late.cluster.catch_up(10)
        assert late_repo.refs.get(MAIN) == tip and len(late_repo.refs.reflog(MAIN)) == 2
        assert seen == [2]
    finally:
        late.cluster.close()
        directory.close()


# -- the site database -------------------------------------------------------------------------------


def test_site_statements_speak_both_dialects() -> None:
    assert to_pyformat("SELECT a FROM t WHERE b = ? AND c LIKE '%x'") == (
        "SELECT a FROM t WHERE b = %s AND c LIKE '%%x'")
    ddl = "CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, n INTEGER NOT NULL, at REAL)"
    assert portable_ddl(ddl, SQLITE) == ddl
    assert portable_ddl(ddl, POSTGRESQL) == (
        "CREATE TABLE t (id BIGSERIAL PRIMARY KEY, n BIGINT NOT NULL, at DOUBLE PRECISION)")


def test_tokens_grants_and_protections_are_the_clusters(pg_dsn: str) -> None:
    one, two = PostgresDirectory(pg_dsn), PostgresDirectory(pg_dsn)
    try:
        token, secret = TokenStore(one).create("ci", access="write")
        found = TokenStore(two).verify(secret)
        assert found is not None and found.id == token.id and found.created == token.created
        Permissions(one).grant("ci", "infra", "admin")
        assert Permissions(two).allows(found, "admin", "infra")
        rule = ProtectionStore(one).add("infra", "refs/heads/main", writers=("ci",))
        assert ProtectionStore(two).rules_for("infra") == [rule]
        assert TokenStore(two).revoke("ci") and TokenStore(one).verify(secret) is None
    finally:
        one.close()
        two.close()


def test_webhook_enqueue_and_claims_are_exactly_once_across_nodes(pg_dsn: str) -> None:
    one, two = PostgresDirectory(pg_dsn), PostgresDirectory(pg_dsn)
    try:
        stores = [WebhookStore(one), WebhookStore(two)]
        hook = stores[0].create_hook(None, {
            "url": "http://example.com/", "content_type": "json", "secret": "", "insecure_ssl": False,
            "events": ["push"], "active": True, "branches": [], "paths": []}, cursor=0)
        barrier = threading.Barrier(2)
        won: list[bool] = []

        def enqueue(store: WebhookStore) -> None:
            barrier.wait()
            won.append(store.enqueue(hook.id, 0, 1, [(1, "app", MAIN, "{}")]))

        threads = [threading.Thread(target=enqueue, args=(s,)) for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(won) == [False, True]
        (delivery,) = stores[1].due(time.time() + 1, set(), 10)
        claims: list[set[int]] = []

        def claim(store: WebhookStore) -> None:
            barrier.wait()
            claims.append(store.claim([delivery.id], time.time() + 1, time.time() + 60))

        threads = [threading.Thread(target=claim, args=(s,)) for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(len(c) for c in claims) == [0, 1]
        assert stores[0].due(time.time() + 1, set(), 10) == []  # claimed: nobody else's to send
        stores[0].record_attempt(delivery.id, status="delivered", attempts=1, next_attempt=None, code=200,
                                 latency_ms=1.0, error=None, body="ok")
        assert stores[1].delivery(hook.id, delivery.id).status == "delivered"  # type: ignore[union-attr]
    finally:
        one.close()
        two.close()
