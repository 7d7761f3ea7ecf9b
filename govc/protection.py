"""Protected branches and ref namespaces, enforced on every push.

A rule names a ref glob (``refs/heads/main``, ``refs/tags/v*``) for one repository or all of them,
and any of: no force-push (the new commit must contain the old one), no deletion, a list of
the only token names allowed to write (with ``govc serve --auth``, the pusher is the token's name),
and required validators: names of checks that must be installed for the repository (Python
validators registered with ``@repo.validator``, or the ``pre-receive``/``update`` hook scripts), so
that a server started without them refuses the push instead of letting it through unchecked.
Rules live in the site database (the data directory's, or the one a cluster's nodes share) and
are read on each push, so ``govc protect`` takes effect on every running server at once.
"""

from __future__ import annotations

import fnmatch
import json
import threading
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING

from govc.hooks import hook_paths
from storage.sitedb import SQLITE, SiteDatabase

if TYPE_CHECKING:
    from govc.repository import Repository

_SCHEMA = """
CREATE TABLE IF NOT EXISTS protections (
    id INTEGER PRIMARY KEY AUTOINCREMENT, repo TEXT, pattern TEXT NOT NULL,
    no_force INTEGER NOT NULL, no_delete INTEGER NOT NULL, writers TEXT NOT NULL,
    validators TEXT NOT NULL DEFAULT '[]')
"""


@dataclass(frozen=True, slots=True)
class Rule:
    id: int
    repository: str | None  # None: every repository
    pattern: str
    no_force: bool
    no_delete: bool
    writers: tuple[str, ...]  # empty: anyone who may push
    validators: tuple[str, ...] = ()  # required validators (see the module's docstring)

    def covers(self, ref: str) -> bool:
        return fnmatch.fnmatchcase(ref, self.pattern)


class ProtectionStore:
    """Rules by repository, in the site database when there is one, in memory otherwise."""

    def __init__(self, directory: SiteDatabase | None = None) -> None:
        self.directory = directory
        self._memory: list[Rule] = []
        self._next = 1
        self._lock = threading.Lock()
        if directory is not None:
            directory.create_tables([_SCHEMA])
            if directory.dialect == SQLITE:  # a data directory from before required validators
                with directory.transaction() as db:
                    columns = {row[1] for row in db.execute("PRAGMA table_info(protections)").fetchall()}
                    if "validators" not in columns:
                        db.execute("ALTER TABLE protections ADD COLUMN validators TEXT NOT NULL DEFAULT '[]'")

    def add(self, repository: str | None, pattern: str, *, no_force: bool = True, no_delete: bool = True,
            writers: tuple[str, ...] = (), validators: tuple[str, ...] = ()) -> Rule:
        if not pattern.startswith("refs/") or len(pattern) > 1000 or any(c in pattern for c in "\0\n"):
            raise ValueError(f"a protected pattern names full refs (refs/heads/main), not {pattern!r}")
        for name in (*writers, *validators):
            if not isinstance(name, str) or not name.strip():
                raise ValueError(f"bad writer or validator name {name!r}")
        if self.directory is None:
            with self._lock:
                rule = Rule(self._next, repository, pattern, no_force, no_delete, tuple(writers),
                            tuple(validators))
                self._next += 1
                self._memory.append(rule)
            return rule
        with self.directory.transaction() as db:
            row = db.execute(
                "INSERT INTO protections (repo, pattern, no_force, no_delete, writers, validators) "
                "VALUES (?,?,?,?,?,?) RETURNING id",
                (repository, pattern, int(no_force), int(no_delete), json.dumps(list(writers)),
                 json.dumps(list(validators)))).fetchone()
            rule_id = int(row[0])
        return Rule(rule_id, repository, pattern, no_force, no_delete, tuple(writers), tuple(validators))

    def remove(self, rule_id: int) -> bool:
        if self.directory is None:
            with self._lock:
                before = len(self._memory)
                self._memory = [r for r in self._memory if r.id != rule_id]
                return len(self._memory) != before
        with self.directory.transaction() as db:
            return db.execute("DELETE FROM protections WHERE id = ?", (rule_id,)).rowcount > 0

    def rules(self) -> list[Rule]:
        if self.directory is None:
            return list(self._memory)
        rows = self.directory.query(
            "SELECT id, repo, pattern, no_force, no_delete, writers, validators FROM protections "
            "ORDER BY id", ())
        return [Rule(int(i), r if r is None else str(r), str(p), bool(f), bool(d),  # type: ignore[call-overload]
                     tuple(json.loads(str(w))), tuple(json.loads(str(v)))) for i, r, p, f, d, w, v in rows]

    def rules_for(self, repository: str) -> list[Rule]:
        return [r for r in self.rules() if r.repository in (None, repository)]

    def forget(self, repository: str) -> None:
        """Drop the rules of a deleted repository (rules for every repository stay)."""
        for rule in self.rules():
            if rule.repository == repository:
                self.remove(rule.id)


def installed_validators(repo: Repository) -> set[str]:
    """What a rule's required validators can name on ``repo``: its Python validators and the
    ``pre-receive``/``update`` hook scripts installed for it (or for every repository)."""
    names = {v.name for v in repo.validators}
    for hook in ("pre-receive", "update"):
        if hook_paths(repo.hooks_dir, repo.name, hook):
            names.add(hook)
    return names


def check(rules: list[Rule], ref: str, *, who: str, deleting: bool, fast_forward: bool,
          installed: Collection[str] = ()) -> str | None:
    """Why the push may not move ``ref`` (git shows it as ``! [remote rejected] ... (reason)``), or
    None when every rule covering the ref allows it. ``installed``: the names of the validators
    the repository has (see the module's docstring)."""
    for rule in rules:
        if not rule.covers(ref):
            continue
        if rule.writers and who not in rule.writers:
            return f"protected ref: only {', '.join(rule.writers)} may update {ref}"
        missing = [v for v in rule.validators if v not in installed]
        if missing and not deleting:
            return (f"protected branch: {ref} requires validator {', '.join(missing)}, "
                    "which is not installed on this server")
        if deleting and rule.no_delete:
            return f"protected branch: {ref} may not be deleted"
        if not deleting and not fast_forward and rule.no_force:
            return f"protected branch: {ref} may not be force-pushed"
    return None
