"""The in-memory ref store: direct refs, symbolic refs and reflogs, updated by compare-and-swap."""

from __future__ import annotations

import threading
import time
from bisect import bisect_right, insort
from collections.abc import Callable, Mapping, Sequence

from storage.errors import InvalidRefName, RefConflict, RefDirectoryConflict, StaleRef
from storage.interfaces import ANY, ZERO_OID, ReflogEntry, RefUpdate
from storage.refnames import is_valid_ref_name

#: Called inside the update lock with the changes about to be applied; raising aborts them all.
#: This is where a durable backend writes (and where its failure leaves memory unchanged).
PersistFn = Callable[[Mapping[str, bytes | None], Sequence[tuple[str, ReflogEntry]]], None]

MAX_SYMREF_DEPTH = 5


def _entry_time(entry: ReflogEntry) -> float:
    return entry.when


def _parents(name: str) -> list[str]:
    """``refs/heads/a/b`` -> ``["refs/heads", "refs/heads/a"]`` (the directories that matter)."""
    out = []
    i = name.find("/", 5)
    while i != -1:
        out.append(name[:i])
        i = name.find("/", i + 1)
    return out


class MemoryRefStore:
    """Refs of one repository. Every update goes through :meth:`update`, atomically."""

    def __init__(self, head: str = "refs/heads/main") -> None:
        self._refs: dict[str, bytes] = {}
        self._symrefs: dict[str, str] = {"HEAD": head}
        self._reflogs: dict[str, list[ReflogEntry]] = {}
        self._lock = threading.RLock()
        self._sorted: list[tuple[str, bytes]] | None = None
        self._dirs: dict[str, int] = {}  # directory -> how many refs are below it
        self.version = 0  # bumped on every change; caches keyed by it stay valid until then

    # -- reading -----------------------------------------------------------------------------

    def resolve_name(self, name: str) -> str:
        """The direct ref a (possibly symbolic) name ends at."""
        for _ in range(MAX_SYMREF_DEPTH):
            target = self._symrefs.get(name)
            if target is None:
                return name
            name = target
        return name

    def get(self, name: str) -> bytes | None:
        return self._refs.get(self.resolve_name(name))

    def read_symref(self, name: str) -> str | None:
        return self._symrefs.get(name)

    def symrefs(self) -> dict[str, str]:
        return dict(self._symrefs)

    def set_symref(self, name: str, target: str) -> None:
        if not target.startswith("refs/") or not is_valid_ref_name(target):
            raise InvalidRefName(target)
        if name != "HEAD" and not is_valid_ref_name(name):
            raise InvalidRefName(name)
        with self._lock:
            self._symrefs[name] = target
            self.version += 1

    def items(self) -> list[tuple[str, bytes]]:
        """All direct refs sorted by name (the order Git advertises them in)."""
        snapshot = self._sorted
        if snapshot is None:
            with self._lock:
                snapshot = self._sorted = sorted(self._refs.items())
        return snapshot

    def list(self, prefix: str = "") -> dict[str, bytes]:
        return {k: v for k, v in self.items() if k.startswith(prefix)}

    def __len__(self) -> int:
        return len(self._refs)

    def reflog(self, name: str) -> list[ReflogEntry]:
        return list(self._reflogs.get(self.resolve_name(name), ()))

    def logged_refs(self) -> list[str]:
        """Every ref with a reflog, including refs deleted since."""
        return list(self._reflogs)

    def value_at(self, name: str, when: float) -> tuple[bool, bytes | None]:
        """Where ``name`` pointed at ``when``, from the reflog: ``(True, value)`` when the log
        covers that moment (value None: the ref did not exist), else ``(False, value)`` with a
        commit to search back from by commit date (None: unknown)."""
        name = self.resolve_name(name)
        entries = self._reflogs.get(name)
        if not entries:
            return False, None
        i = bisect_right(entries, when, key=_entry_time) - 1
        if i >= 0:
            new = entries[i].new
            return True, None if new == ZERO_OID else new
        # Before the log begins: the ref's history from then is only known by commit dates,
        # searched from the value it had (or, if the log starts with its creation by a push or an
        # import, the value it was created with).
        first = entries[0]
        if first.old != ZERO_OID:
            return False, first.old
        if first.message == "push" or first.message.startswith("import"):
            return False, first.new
        return True, None  # created here (a branch or reality made from existing commits)

    # -- writing -----------------------------------------------------------------------------

    def check(self, updates: Sequence[RefUpdate]) -> list[tuple[str, bytes | None, bytes | None]]:
        """Validate a transaction against the current refs; return (name, old, new) per update.

        Raises the first failure: a bad name, a stale expected value, a name given twice, or a
        directory/file conflict with the refs as they would be afterwards.
        """
        plan: list[tuple[str, bytes | None, bytes | None]] = []
        seen: set[str] = set()
        for u in updates:
            name = self.resolve_name(u.name)
            if not is_valid_ref_name(name) or name == "HEAD":
                raise InvalidRefName(u.name)
            if name in seen:
                raise RefConflict(name, f"ref '{name}' is updated twice in one transaction")
            seen.add(name)
            current = self._refs.get(name)
            if u.old is not ANY and u.old != current and not (u.old == ZERO_OID and current is None):
                raise StaleRef(name, u.old if isinstance(u.old, bytes) else None, current)
            new = None if u.new in (None, ZERO_OID) else u.new
            plan.append((name, current, new))
        created = [name for name, old, new in plan if old is None and new is not None]
        if created:
            self._check_directories(created, {name for name, old, new in plan if new is None})
        return plan

    def _check_directories(self, created: list[str], deleted: set[str]) -> None:
        """git's directory/file rule for the refs as they would be after the transaction, in
        time proportional to the names' depth (not to how many refs exist)."""
        created_set = set(created)
        created_dirs: set[str] = set()
        for name in created:
            created_dirs.update(_parents(name))
        for name in created:
            for parent in _parents(name):
                if (parent in self._refs and parent not in deleted) or parent in created_set:
                    raise RefDirectoryConflict(name, parent)
            below = self._dirs.get(name, 0)
            if below:
                prefix = name + "/"
                below -= sum(1 for d in deleted if d.startswith(prefix))
            if below > 0 or name in created_dirs:
                prefix = name + "/"
                other = next((r for r in [*self._refs, *created_set] if r.startswith(prefix)), prefix)
                raise RefDirectoryConflict(name, other)

    def _count_dirs(self, name: str, delta: int) -> None:
        for parent in _parents(name):
            count = self._dirs.get(parent, 0) + delta
            if count:
                self._dirs[parent] = count
            else:
                self._dirs.pop(parent, None)

    def update(
        self,
        updates: Sequence[RefUpdate],
        who: str = "govc",
        message: str = "",
        persist: PersistFn | None = None,
    ) -> list[tuple[str, bytes | None, bytes | None]]:
        """Apply all updates or none; return the (name, old, new) triples applied."""
        with self._lock:
            plan = self.check(updates)
            now = time.time()
            changes = {name: new for name, _old, new in plan}
            log = [
                (name, ReflogEntry(old or ZERO_OID, new or ZERO_OID, who, now, message))
                for name, old, new in plan
            ]
            if persist is not None:
                persist(changes, log)
            for name, new in changes.items():
                if new is None:
                    if self._refs.pop(name, None) is not None:
                        self._count_dirs(name, -1)
                else:
                    if name not in self._refs:
                        self._count_dirs(name, +1)
                    self._refs[name] = new
            for name, entry in log:
                self._reflogs.setdefault(name, []).append(entry)
            self._sorted = None
            self.version += 1
            return plan

    def apply_followed(
        self, changes: Sequence[tuple[str, bytes | None]], entries: Sequence[tuple[str, ReflogEntry]],
    ) -> None:
        """Changes another node already committed to the shared store: applied as they are (the
        shared store did the compare-and-swap), their reflog entries kept in time order."""
        with self._lock:
            for name, new in changes:
                if new is None:
                    if self._refs.pop(name, None) is not None:
                        self._count_dirs(name, -1)
                else:
                    if name not in self._refs:
                        self._count_dirs(name, +1)
                    self._refs[name] = new
            for name, entry in entries:
                insort(self._reflogs.setdefault(name, []), entry, key=_entry_time)
            self._sorted = None
            self.version += 1

    def replace_symrefs(self, symrefs: Mapping[str, str]) -> None:
        """The symbolic refs as another node left them in the shared store."""
        with self._lock:
            if symrefs and symrefs != self._symrefs:
                self._symrefs = dict(symrefs)
                self.version += 1

    def load(
        self,
        refs: Mapping[str, bytes],
        symrefs: Mapping[str, str],
        reflogs: Mapping[str, list[ReflogEntry]] | None = None,
    ) -> None:
        """Replace the whole state (a backend restoring what it persisted)."""
        with self._lock:
            self._refs = dict(refs)
            self._dirs = {}
            for name in self._refs:
                self._count_dirs(name, +1)
            self._symrefs = dict(symrefs) or {"HEAD": "refs/heads/main"}
            self._reflogs = {k: list(v) for k, v in (reflogs or {}).items()}
            self._sorted = None
            self.version += 1
