"""Time travel: every ref, tree and file as it was at a moment.

Where a ref pointed at time T comes from its reflog (every update govc made is logged with its
time); for moments before the reflog begins — history that was pushed or imported — the ref's
first-parent history is searched for the newest commit made at or before T.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from govc.trees import Commit, load_commit

if TYPE_CHECKING:
    from govc.repository import Repository


def _epoch(when: datetime | float | int) -> float:
    if isinstance(when, datetime):
        return when.timestamp()  # naive datetimes are local time, as datetime itself treats them
    return float(when)


class Snapshot:
    """The repository as it was at :attr:`when` (seconds since the epoch)."""

    def __init__(self, repo: Repository, when: datetime | float | int) -> None:
        self.repo = repo
        self.when = _epoch(when)
        self._tips: dict[str, bytes | None] = {}

    def __repr__(self) -> str:
        return f"<Snapshot of {self.repo.name or 'repository'} at {datetime.fromtimestamp(self.when)}>"

    def ref(self, name: str = "main") -> bytes | None:
        """The commit ``name`` pointed at then (None if it did not exist)."""
        full = self.repo.resolve_reality_ref(name)
        if full not in self._tips:
            self._tips[full] = self._resolve(full)
        return self._tips[full]

    def _resolve(self, ref: str) -> bytes | None:
        found, value = self.repo.refs.value_at(ref, self.when)
        if found:
            return value
        current = self.repo.refs.get(ref) if value is None else value
        # Older than the reflog: walk first parents back to a commit made by then.
        graph = self.repo.graph
        while current is not None:
            info = graph.commit(current)
            if info.time <= self.when:
                return current
            current = info.parents[0] if info.parents else None
        return None

    def refs(self) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        names = {name for name, _ in self.repo.refs.items()} | set(self.repo.refs.logged_refs())
        for name in sorted(names):
            value = self.ref(name)
            if value is not None:
                out[name] = value
        return out

    def read(self, path: str, branch: str = "main") -> bytes:
        """The file's content then; KeyError if it did not exist."""
        tip = self.ref(branch)
        if tip is None:
            raise KeyError(path)
        return self.repo.trees.read(self.repo.graph.commit(tip).tree, path)

    def last_commit(self, branch: str = "main") -> Commit:
        tip = self.ref(branch)
        if tip is None:
            raise KeyError(branch)
        return load_commit(self.repo.objects, tip)

    def files(self, branch: str = "main") -> list[str]:
        tip = self.ref(branch)
        if tip is None:
            return []
        return [p for p, _ in self.repo.trees.walk(self.repo.graph.commit(tip).tree)]
