"""Protection rules: storage in the data directory and the decisions pushes get."""

from __future__ import annotations

from pathlib import Path

import pytest

from govc.protection import ProtectionStore, check
from storage.disk import DataDirectory


def test_rules_persist_and_scope_by_repository(tmp_path: Path) -> None:
    store = ProtectionStore(DataDirectory(tmp_path / "data"))
    store.add("infra", "refs/heads/main")
    tags = store.add(None, "refs/tags/v*", no_force=True, no_delete=True, writers=("ci",))
    again = ProtectionStore(DataDirectory(tmp_path / "data"))
    assert [(r.repository, r.pattern) for r in again.rules_for("infra")] == [
        ("infra", "refs/heads/main"), (None, "refs/tags/v*")]
    assert [r.pattern for r in again.rules_for("other")] == ["refs/tags/v*"]
    assert again.remove(tags.id) and not again.remove(tags.id)
    with pytest.raises(ValueError):
        store.add("infra", "main")


def test_decisions() -> None:
    store = ProtectionStore()
    store.add("infra", "refs/heads/main")
    store.add(None, "refs/tags/v*", writers=("ci",))
    rules = store.rules_for("infra")
    ok = {"who": "dev", "deleting": False, "fast_forward": True}
    assert check(rules, "refs/heads/main", **ok) is None
    assert "force-pushed" in str(check(rules, "refs/heads/main", **{**ok, "fast_forward": False}))
    assert "deleted" in str(check(rules, "refs/heads/main", **{**ok, "deleting": True}))
    assert check(rules, "refs/heads/topic", **{**ok, "fast_forward": False}) is None
    assert "only ci may update refs/tags/v1.0" in str(check(rules, "refs/tags/v1.0", **ok))
    assert check(rules, "refs/tags/v1.0", **{**ok, "who": "ci"}) is None
