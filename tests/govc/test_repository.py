"""The one write path: ref transactions, their events, and the durable backend's place in them."""

from __future__ import annotations

import json

import pytest

from govc.repository import Repository
from storage.errors import StaleRef
from storage.interfaces import MemoryBackend, RefUpdate
from tests.helpers import C2, C6, C7


class RecordingBackend(MemoryBackend):
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.commits: list[dict] = []
        self.events: list[str | None] = []
        self.packs: list = []

    def store_pack(self, pack) -> None:
        self.packs.append(pack)

    def commit_refs(self, updates, symrefs, reflog, event=None) -> None:
        if self.fail:
            raise OSError("backend down")
        self.commits.append(dict(updates))
        self.events.append(event)

    def remove_packs(self, packs) -> None:
        pass


def test_one_event_per_transaction() -> None:
    repo = Repository("r")
    events = []
    repo.subscribe(events.append)
    event = repo.update_refs(
        [RefUpdate("refs/heads/main", C6), RefUpdate("refs/heads/dev", C7)],
        who="alice",
        message="two refs",
        source="api",
    )
    assert events == [event]
    assert event.repository == "r"
    assert {(c.name, c.old, c.new) for c in event.changes} == {
        ("refs/heads/main", None, C6),
        ("refs/heads/dev", None, C7),
    }
    assert (event.who, event.message, event.source) == ("alice", "two refs", "api")


def test_failed_transaction_sends_no_event() -> None:
    repo = Repository("r")
    repo.update_refs([RefUpdate("refs/heads/main", C6)], who="a", message="m", source="api")
    events = []
    repo.subscribe(events.append)
    with pytest.raises(StaleRef):
        repo.update_refs([RefUpdate("refs/heads/main", C7, C2)], who="a", message="m", source="api")
    assert events == []
    assert repo.refs.get("refs/heads/main") == C6


def test_failing_listener_does_not_undo_the_update() -> None:
    repo = Repository("r")
    seen = []

    def bad(event) -> None:
        raise RuntimeError("listener bug")

    repo.subscribe(bad)
    repo.subscribe(seen.append)
    repo.update_refs([RefUpdate("refs/heads/main", C6)], who="a", message="m", source="api")
    assert repo.refs.get("refs/heads/main") == C6
    assert len(seen) == 1


def test_unsubscribe() -> None:
    repo = Repository("r")
    seen = []
    stop = repo.subscribe(seen.append)
    repo.update_refs([RefUpdate("refs/heads/a", C6)], who="a", message="m", source="api")
    stop()
    repo.update_refs([RefUpdate("refs/heads/b", C6)], who="a", message="m", source="api")
    assert len(seen) == 1


def test_backend_sees_the_transaction_and_its_failure_changes_nothing() -> None:
    backend = RecordingBackend()
    repo = Repository("r", backend=backend)
    repo.update_refs([RefUpdate("refs/heads/main", C6)], who="a", message="m", source="api")
    assert backend.commits == [{"refs/heads/main": C6}]
    recorded = json.loads(backend.events[0])  # the event goes into the same durable step
    assert recorded["changes"] == [{"ref": "refs/heads/main", "old": "0" * 40, "new": C6.decode()}]
    assert recorded["source"] == "api"
    backend.fail = True
    events = []
    repo.subscribe(events.append)
    with pytest.raises(OSError):
        repo.update_refs([RefUpdate("refs/heads/main", C7, C6)], who="a", message="m", source="api")
    assert repo.refs.get("refs/heads/main") == C6
    assert len(repo.refs.reflog("refs/heads/main")) == 1
    assert events == []


def test_packs_are_made_durable_before_visible(repo_c6) -> None:
    backend = RecordingBackend()
    repo = Repository("r", backend=backend)
    (pack,) = repo_c6.objects.packs
    repo.add_pack(pack)
    assert backend.packs == [pack]
    assert repo.objects.has(C6)


def test_empty_and_head(repo_c6) -> None:
    repo = Repository("r")
    assert repo.is_empty()
    assert repo.head_target == "refs/heads/main"
    assert not repo_c6.is_empty()
    repo_c6.set_head("refs/heads/feature")
    assert repo_c6.refs.get("HEAD") == C7
