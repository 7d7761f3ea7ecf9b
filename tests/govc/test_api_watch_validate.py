"""Watchers (one event per ref update, in order, filtered, sync or async, never blocking an update)
and validators (vetoing API commits, merges and promotions before anything is written)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator

import pytest

import govc
from storage.interfaces import RefUpdate

OPS = "ops <ops@example.com>"


def make_repo(files: dict[str, str] | None = None) -> govc.Repository:
    repo = govc.Repository("w")
    repo.reality("main").apply(files or {"README.md": "hi\n"}, "initial", author=OPS)
    return repo


@pytest.fixture
def watchers() -> Iterator[list[govc.Watcher]]:
    """Watchers made by a test, closed at its end so that no worker thread outlives it."""
    made: list[govc.Watcher] = []
    yield made
    for w in made:
        with contextlib.suppress(ValueError):  # already closed by the test
            w.close(wait=False)


def watch(repo: govc.Repository, made: list[govc.Watcher], **filters: object) -> tuple[govc.Watcher, list]:
    seen: list[govc.Event] = []
    w = repo.watch(seen.append, **filters) if filters else repo.watch(seen.append)
    made.append(w)
    return w, seen


# -- watchers: what an event says --------------------------------------------------------------


def test_api_commit_event_fields(watchers: list[govc.Watcher]) -> None:
    repo = make_repo({"main.tf": "a\n", "README.md": "r\n"})
    old = repo.reality("main").head
    w, seen = watch(repo, watchers)
    with repo.transaction("main", author=OPS) as tx:
        tx.write("main.tf", "b\n")
        tx.write("vars.tf", "v\n")
        tx.write("docs/guide.md", "g\n")
        commit = tx.commit("Update terraform")
    w.drain()
    assert len(seen) == 1
    event = seen[0]
    assert isinstance(event, govc.Event)
    assert event.branch == "main"
    assert event.ref == "refs/heads/main"
    assert event.old == old.decode()
    assert event.new == commit.oid
    assert event.author == OPS
    assert event.pusher == OPS
    assert event.source == "api"
    assert event.push_options == ()
    assert event.repository == "w"
    assert event.message == "Update terraform"
    assert sorted(c.path for c in event.changes()) == ["docs/guide.md", "main.tf", "vars.tf"]
    assert sorted(c.path for c in event.changes("*.tf")) == ["main.tf", "vars.tf"]
    assert {c.path: c.kind for c in event.changes()} == {
        "docs/guide.md": "added", "main.tf": "modified", "vars.tf": "added",
    }
    assert [c.path for c in event.changes("docs/*")] == ["docs/guide.md"]
    assert [c.oid for c in event.commits] == [commit.oid]
    assert event.commits[0].message == "Update terraform\n"


def test_event_for_several_commits_at_once(watchers: list[govc.Watcher]) -> None:
    repo = make_repo()
    staging = repo.parallel_reality("staging")
    commits = [staging.apply({f"f{i}": f"{i}\n"}) for i in range(8)]  # all within one second
    old = repo.reality("main").head
    w, seen = watch(repo, watchers, branches="main")
    repo.update_refs([RefUpdate("refs/heads/main", staging.head, old)], who="deployer",
                     message="fast-forward", source="api")
    w.drain()
    assert len(seen) == 1
    assert [c.oid for c in seen[0].commits] == [c.oid for c in reversed(commits)]
    assert sorted(c.path for c in seen[0].changes()) == [f"f{i}" for i in range(8)]
    assert seen[0].pusher == "deployer"


def test_event_for_a_deleted_branch(watchers: list[govc.Watcher]) -> None:
    repo = make_repo({"a": "1\n"})
    with repo.transaction("doomed") as tx:
        tx.write("x", "1\n")
        tx.commit("doomed")
    tip = repo.reality("doomed").head
    w, seen = watch(repo, watchers)
    repo.update_refs([RefUpdate("refs/heads/doomed", None, tip)], who="x", message="delete", source="api")
    w.drain()
    assert len(seen) == 1
    event = seen[0]
    assert (event.branch, event.old, event.new) == ("doomed", tip.decode(), None)
    assert event.commits == []
    assert event.author is None
    assert {c.path: c.kind for c in event.changes()} == {"x": "removed"}  # "doomed" began empty


def test_event_for_a_new_reality(watchers: list[govc.Watcher]) -> None:
    repo = make_repo()
    w, seen = watch(repo, watchers)
    canary = repo.parallel_reality("canary")
    canary.apply({"c": "1\n"})
    w.drain()
    assert [(e.ref, e.branch) for e in seen] == [("refs/realities/canary", "canary")] * 2
    assert seen[0].old is None and seen[0].new == repo.reality("main").head.decode()
    assert [c.path for c in seen[1].changes()] == ["c"]


# -- watchers: one event per ref update, in order ----------------------------------------------


def test_one_event_per_ref_update_of_every_kind(watchers: list[govc.Watcher]) -> None:
    repo = make_repo({"app.conf": "1\n"})
    with repo.transaction("staging") as tx:
        tx.write("s", "1\n")
        tx.commit("staging")
    w, seen = watch(repo, watchers)
    with repo.transaction(["main", "staging"]) as tx:  # two refs: two events
        tx.write("a", "1\n")
        tx.write("b", "1\n", branch="staging")
        tx.commit("both")
    realities = repo.parallel_realities(["r1", "r2", "r3"])  # three refs: three events
    realities[0].apply({"r": "1\n"})  # one
    repo.merge(realities[0], into="main")  # one (fast-forward)
    realities[1].apply({"q": "1\n"})  # one
    repo.reality("main").apply({"m": "1\n"})  # one
    repo.merge(realities[1], into="main")  # one (merge commit)
    repo.set_main(realities[2], branch="staging")  # one
    w.drain()
    refs = [e.ref for e in seen]
    assert sorted(refs[:2]) == ["refs/heads/main", "refs/heads/staging"]
    assert refs[2:] == [
        "refs/realities/r1", "refs/realities/r2", "refs/realities/r3",
        "refs/realities/r1", "refs/heads/main", "refs/realities/r2", "refs/heads/main", "refs/heads/main",
        "refs/heads/staging",
    ]
    assert len(seen) == 11
    assert {e.source for e in seen[-4:-1]} <= {"api", "merge"}


def test_events_arrive_in_commit_order(watchers: list[govc.Watcher]) -> None:
    repo = make_repo()
    w, seen = watch(repo, watchers)
    commits = [repo.reality("main").apply({"n": f"{i}\n"}) for i in range(50)]
    w.drain()
    assert [e.new for e in seen] == [c.oid for c in commits]
    assert all(seen[i].old == seen[i - 1].new for i in range(1, len(seen)))


def test_events_from_many_threads_chain_without_gaps(watchers: list[govc.Watcher]) -> None:
    repo = make_repo()
    start = repo.reality("main").head.decode()
    w, seen = watch(repo, watchers)
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            barrier.wait()
            for i in range(10):
                with repo.transaction("main", rebase=True) as tx:
                    tx.write(f"w{n}-{i}", "x\n")
                    tx.commit(f"{n}/{i}")
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    w.drain()
    assert errors == []
    assert len(seen) == 80
    assert seen[0].old == start
    assert all(seen[i].old == seen[i - 1].new for i in range(1, 80))
    assert seen[-1].new == repo.reality("main").head.decode()


def test_each_watcher_gets_its_own_copy_of_every_event(watchers: list[govc.Watcher]) -> None:
    repo = make_repo()
    w1, seen1 = watch(repo, watchers)
    w2, seen2 = watch(repo, watchers)
    for i in range(5):
        repo.reality("main").apply({"x": f"{i}\n"})
    w1.drain()
    w2.drain()
    assert [e.new for e in seen1] == [e.new for e in seen2]
    assert len(seen1) == 5


def test_nothing_for_updates_before_registration(watchers: list[govc.Watcher]) -> None:
    repo = make_repo()
    repo.reality("main").apply({"before": "1\n"})
    w, seen = watch(repo, watchers)
    w.drain()
    assert seen == []


# -- watchers: filters -------------------------------------------------------------------------


def test_path_filter(watchers: list[govc.Watcher]) -> None:
    repo = make_repo()
    w, seen = watch(repo, watchers, paths="*.tf")
    repo.reality("main").apply({"README.md": "docs only\n"})
    tf = repo.reality("main").apply({"env/prod/main.tf": "prod\n", "notes.txt": "n\n"})
    repo.reality("main").apply({"other.txt": "o\n"})
    w.drain()
    assert [e.new for e in seen] == [tf.oid]
    assert [c.path for c in seen[0].changes("*.tf")] == ["env/prod/main.tf"]


def test_several_path_patterns(watchers: list[govc.Watcher]) -> None:
    repo = make_repo()
    w, seen = watch(repo, watchers, paths=["*.tf", "k8s/*"])
    a = repo.reality("main").apply({"k8s/deploy.yaml": "d\n"})
    repo.reality("main").apply({"README.md": "x\n"})
    b = repo.reality("main").apply({"x.tf": "x\n"})
    w.drain()
    assert [e.new for e in seen] == [a.oid, b.oid]


def test_branch_filter(watchers: list[govc.Watcher]) -> None:
    repo = make_repo()
    w, seen = watch(repo, watchers, branches="main")
    repo.parallel_reality("canary").apply({"c": "1\n"})
    with repo.transaction("staging") as tx:
        tx.write("s", "1\n")
        tx.commit("staging")
    m = repo.reality("main").apply({"m": "1\n"})
    w.drain()
    assert [(e.branch, e.new) for e in seen] == [("main", m.oid)]


def test_branch_filter_globs_and_lists(watchers: list[govc.Watcher]) -> None:
    repo = make_repo()
    w, seen = watch(repo, watchers, branches=["release/*", "canary"])
    for name in ("release/1.0", "feature/x", "release/2.0"):
        with repo.transaction(name) as tx:
            tx.write("v", name)
            tx.commit(name)
    repo.parallel_reality("canary")
    repo.parallel_reality("other")
    w.drain()
    assert [e.branch for e in seen] == ["release/1.0", "release/2.0", "canary"]


def test_path_and_branch_filters_together(watchers: list[govc.Watcher]) -> None:
    repo = make_repo()
    w, seen = watch(repo, watchers, paths="*.tf", branches="main")
    repo.parallel_reality("canary").apply({"a.tf": "1\n"})
    repo.reality("main").apply({"a.md": "1\n"})
    hit = repo.reality("main").apply({"a.tf": "1\n"})
    w.drain()
    assert [e.new for e in seen] == [hit.oid]


def test_decorator_forms(watchers: list[govc.Watcher]) -> None:
    repo = make_repo()
    got: list[str] = []

    @repo.watch
    def bare(event: govc.Event) -> None:
        got.append("bare:" + event.branch)

    @repo.watch(paths="*.tf", branches="main")
    def on_change(event: govc.Event) -> None:
        got.append("tf:" + ",".join(c.path for c in event.changes("*.tf")))

    watchers.extend([bare, on_change])
    assert isinstance(bare, govc.Watcher) and isinstance(on_change, govc.Watcher)
    repo.reality("main").apply({"main.tf": "x\n"})
    bare.drain()
    on_change.drain()
    assert sorted(got) == ["bare:main", "tf:main.tf"]


# -- watchers: sync and async, failing and slow ------------------------------------------------


def test_async_callback_registered_outside_a_loop(watchers: list[govc.Watcher]) -> None:
    repo = make_repo()
    got: list[str] = []

    async def on_change(event: govc.Event) -> None:
        await asyncio.sleep(0.001)
        got.append(event.new)

    w = repo.watch(on_change)
    watchers.append(w)
    commit = repo.reality("main").apply({"x": "1\n"})
    w.drain()
    assert got == [commit.oid]


def test_async_callback_runs_on_the_loop_it_was_registered_in(watchers: list[govc.Watcher]) -> None:
    repo = make_repo()
    got: list[tuple[str, int]] = []

    async def main() -> tuple[int, list[str]]:
        loop_thread = threading.get_ident()

        async def on_change(event: govc.Event) -> None:
            await asyncio.sleep(0)
            got.append((event.new, threading.get_ident()))

        w = repo.watch(on_change)
        watchers.append(w)
        oids = [repo.reality("main").apply({"x": f"{i}\n"}).oid for i in range(3)]
        await asyncio.to_thread(w.drain)
        return loop_thread, oids

    loop_thread, oids = asyncio.run(main())
    assert [oid for oid, _ in got] == oids
    assert {thread for _, thread in got} == {loop_thread}


def test_a_failing_watcher_does_not_break_later_events_or_the_update(
    watchers: list[govc.Watcher],
) -> None:
    repo = make_repo()
    got: list[str] = []

    def flaky(event: govc.Event) -> None:
        got.append(event.new)
        if len(got) % 2 == 1:
            raise RuntimeError("watcher bug")

    w = repo.watch(flaky)
    watchers.append(w)
    w2, seen = watch(repo, watchers)
    commits = [repo.reality("main").apply({"x": f"{i}\n"}) for i in range(4)]
    w.drain()
    w2.drain()
    assert got == [c.oid for c in commits]
    assert [e.new for e in seen] == [c.oid for c in commits]
    assert repo.reality("main").head == commits[-1].oid.encode()


def test_a_failing_async_watcher_does_not_break_later_events(watchers: list[govc.Watcher]) -> None:
    repo = make_repo()
    got: list[str] = []

    async def flaky(event: govc.Event) -> None:
        got.append(event.new)
        raise ValueError("async watcher bug")

    w = repo.watch(flaky)
    watchers.append(w)
    for i in range(3):
        repo.reality("main").apply({"x": f"{i}\n"})
    w.drain()
    assert len(got) == 3


def test_a_slow_watcher_does_not_delay_updates(watchers: list[govc.Watcher]) -> None:
    repo = make_repo()
    delivered: list[str] = []

    def slow(event: govc.Event) -> None:
        time.sleep(0.2)
        delivered.append(event.new)

    w = repo.watch(slow)
    watchers.append(w)
    fast, seen = watch(repo, watchers)
    start = time.monotonic()
    commits = [repo.reality("main").apply({"x": f"{i}\n"}) for i in range(3)]
    staging = repo.parallel_reality("staging").head
    repo.update_refs([RefUpdate("refs/heads/other", staging)], who="x", message="m", source="api")
    elapsed = time.monotonic() - start
    assert elapsed < 0.15, f"updates waited {elapsed:.2f}s for a slow watcher"
    fast.drain(timeout=0.15)  # the fast watcher is not queued behind the slow one
    assert len(seen) == 5
    assert len(delivered) < 5
    w.drain()
    assert delivered[:3] == [c.oid for c in commits]
    assert len(delivered) == 5


def test_a_watcher_that_blocks_does_not_block_the_write_path(watchers: list[govc.Watcher]) -> None:
    repo = make_repo()
    release = threading.Event()

    def stuck(event: govc.Event) -> None:
        release.wait(5)

    w = repo.watch(stuck)
    watchers.append(w)
    try:
        start = time.monotonic()
        for i in range(20):
            repo.reality("main").apply({"x": f"{i}\n"})
        assert time.monotonic() - start < 1.0
    finally:
        release.set()
    w.drain()


# -- watchers: removal and drain ---------------------------------------------------------------


def test_close_stops_delivery(watchers: list[govc.Watcher]) -> None:
    repo = make_repo()
    w, seen = watch(repo, watchers)
    repo.reality("main").apply({"x": "1\n"})
    w.close()
    repo.reality("main").apply({"x": "2\n"})
    time.sleep(0.05)
    assert len(seen) == 1


def test_unwatch_stops_delivery_and_forgets_the_watcher(watchers: list[govc.Watcher]) -> None:
    repo = make_repo()
    w, seen = watch(repo, watchers)
    assert w in repo.watchers
    repo.unwatch(w)
    assert w not in repo.watchers
    repo.reality("main").apply({"x": "1\n"})
    time.sleep(0.05)
    assert seen == []


def test_close_lets_queued_events_finish() -> None:
    repo = make_repo()
    got: list[str] = []

    def slowish(event: govc.Event) -> None:
        time.sleep(0.02)
        got.append(event.new)

    w = repo.watch(slowish)
    for i in range(5):
        repo.reality("main").apply({"x": f"{i}\n"})
    w.close()
    assert len(got) == 5


def test_closing_twice_and_unwatching_a_closed_watcher_are_harmless() -> None:
    repo = make_repo()
    w = repo.watch(lambda event: None)
    w.close()
    w.close()
    repo.unwatch(w)
    assert w not in repo.watchers
    repo.reality("main").apply({"x": "1\n"})


def test_closed_watcher_is_not_listed() -> None:
    repo = make_repo()
    w = repo.watch(lambda event: None)
    w.close()
    assert w not in repo.watchers


def test_drain_waits_for_delivery(watchers: list[govc.Watcher]) -> None:
    repo = make_repo()
    got: list[str] = []

    def slowish(event: govc.Event) -> None:
        time.sleep(0.05)
        got.append(event.new)

    w = repo.watch(slowish)
    watchers.append(w)
    for i in range(3):
        repo.reality("main").apply({"x": f"{i}\n"})
    assert len(got) < 3
    w.drain()
    assert len(got) == 3


def test_watcher_events_are_not_sent_for_failed_updates(watchers: list[govc.Watcher]) -> None:
    repo = make_repo()

    @repo.validator
    def refuse(change: govc.Change) -> None:
        raise govc.ValidationError("no")

    w, seen = watch(repo, watchers)
    with pytest.raises(govc.ValidationError):
        repo.reality("main").apply({"x": "1\n"})
    with repo.transaction("main") as tx:
        tx.write("y", "1\n")
    w.drain()
    assert seen == []


# -- validators --------------------------------------------------------------------------------


def recording_validator(repo: govc.Repository, **options: object) -> list[govc.Change]:
    seen: list[govc.Change] = []
    if options:
        repo.validator(**options)(seen.append)
    else:
        repo.validator(seen.append)
    return seen


def test_validator_sees_the_proposed_change() -> None:
    repo = make_repo({"app.conf": "a\n", "gone.txt": "g\n"})
    old = repo.reality("main").head
    seen = recording_validator(repo)
    with repo.transaction("main", author=OPS) as tx:
        tx.write("app.conf", "b\n")
        tx.write("new/file.txt", b"\x00binary")
        tx.remove("gone.txt")
        commit = tx.commit("change")
    assert len(seen) == 1
    change = seen[0]
    assert isinstance(change, govc.Change)
    assert change.branch == "main"
    assert change.ref == "refs/heads/main"
    assert change.old == old
    assert change.new == commit.oid.encode()
    assert change.source == "api"
    assert change.files == {"app.conf": b"b\n", "new/file.txt": b"\x00binary", "gone.txt": None}
    assert sorted(change.paths) == ["app.conf", "gone.txt", "new/file.txt"]
    assert change.commit is not None and change.commit.author == OPS
    assert [c.path for c in change.matching("*.conf")] == ["app.conf"]


def test_validator_sees_a_first_commit_with_no_old() -> None:
    repo = govc.Repository()
    seen = recording_validator(repo)
    repo.reality("main").apply({"a": "1\n"})
    assert seen[0].old is None
    assert seen[0].files == {"a": b"1\n"}


def test_validator_veto_writes_nothing() -> None:
    repo = make_repo({"app.conf": "ok\n"})

    @repo.validator
    def no_plaintext_secrets(change: govc.Change) -> None:
        if b"password" in (change.files.get("app.conf") or b""):
            raise govc.ValidationError("secret in app.conf")

    events: list[govc.RefEvent] = []
    repo.subscribe(events.append)
    before, objects = repo.reality("main").head, len(repo.objects)
    with pytest.raises(govc.ValidationError, match=r"secret in app\.conf"), repo.transaction("main") as tx:
        tx.write("app.conf", "password=1\n")
        tx.write("other.conf", "harmless\n")
        tx.commit("leak")
    assert repo.reality("main").head == before
    assert len(repo.objects) == objects
    assert events == []
    assert repo.reality("main").read("app.conf") == b"ok\n"


def test_validator_veto_in_a_durable_repository_writes_nothing_to_disk(tmp_path) -> None:
    repo = govc.Repository.open(tmp_path)
    repo.reality("main").apply({"a": "1\n"})

    @repo.validator
    def refuse(change: govc.Change) -> None:
        raise govc.ValidationError("refused")

    pack_dir = tmp_path / "repos" / "default.git" / "objects" / "pack"
    before = sorted(pack_dir.iterdir())
    with pytest.raises(govc.ValidationError):
        repo.reality("main").apply({"a": "2\n"})
    assert sorted(pack_dir.iterdir()) == before
    assert govc.Repository.open(tmp_path).reality("main").read("a") == b"1\n"


def test_validator_branch_filter() -> None:
    repo = make_repo()

    @repo.validator(branches="main")
    def main_only(change: govc.Change) -> None:
        raise govc.ValidationError("main is frozen")

    repo.parallel_reality("canary").apply({"x": "1\n"})
    with repo.transaction("staging") as tx:
        tx.write("x", "1\n")
        tx.commit("fine")
    with pytest.raises(govc.ValidationError, match="main is frozen"):
        repo.reality("main").apply({"x": "1\n"})


def test_validator_branch_glob() -> None:
    repo = make_repo()
    seen = recording_validator(repo, branches="release/*")
    with repo.transaction("release/1.0") as tx:
        tx.write("v", "1\n")
        tx.commit("r")
    repo.reality("main").apply({"v": "1\n"})
    assert [c.branch for c in seen] == ["release/1.0"]


def test_a_crashing_validator_refuses_the_change() -> None:
    repo = make_repo()

    @repo.validator
    def buggy(change: govc.Change) -> None:
        raise KeyError("oops")

    before = repo.reality("main").head
    with pytest.raises(govc.ValidationError, match="buggy"):
        repo.reality("main").apply({"x": "1\n"})
    assert repo.reality("main").head == before


def test_validators_run_in_order_and_the_first_refusal_wins() -> None:
    repo = make_repo()
    calls: list[str] = []

    def make(name: str, refuse: bool) -> Callable[[govc.Change], None]:
        def check(change: govc.Change) -> None:
            calls.append(name)
            if refuse:
                raise govc.ValidationError(name)
        return check

    repo.validator(make("first", False))
    repo.validator(make("second", True))
    repo.validator(make("third", True))
    with pytest.raises(govc.ValidationError, match="second"):
        repo.reality("main").apply({"x": "1\n"})
    assert calls == ["first", "second"]


def test_validator_is_returned_by_the_decorator() -> None:
    repo = make_repo()

    @repo.validator
    def check(change: govc.Change) -> None:
        pass

    assert callable(check)
    repo.reality("main").apply({"x": "1\n"})


def test_validator_sees_both_refs_of_a_multi_ref_transaction() -> None:
    repo = make_repo()
    with repo.transaction("staging") as tx:
        tx.write("s", "1\n")
        tx.commit("s")
    seen = recording_validator(repo)
    with repo.transaction(["main", "staging"]) as tx:
        tx.write("m", "1\n")
        tx.write("s", "2\n", branch="staging")
        tx.commit("both")
    assert sorted((c.branch, tuple(c.files.items())) for c in seen) == [
        ("main", (("m", b"1\n"),)), ("staging", (("s", b"2\n"),)),
    ]


def test_validator_sees_merges() -> None:
    repo = make_repo()
    canary = repo.parallel_reality("canary")
    canary.apply({"c": "1\n"})
    repo.reality("main").apply({"m": "1\n"})
    seen = recording_validator(repo)
    outcome = repo.merge(canary, into="main")
    assert [(c.branch, c.new) for c in seen] == [("main", outcome.commit.oid.encode())]
    assert seen[0].files == {"c": b"1\n"}
