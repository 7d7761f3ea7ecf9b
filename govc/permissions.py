"""Who may do what to which repository, beyond what a token carries by itself.

A token names a principal (its name: ``ci``, ``alice``) and carries one grant of its own: its scope
(one repository, or every one) and access level. An administrator can give a principal more:
``grant("alice", "infra", "write")`` lets every token named ``alice`` push to ``infra``. The access a
token has on a repository is the highest of its own grant and its principal's grants there.

Each repository can also be opened for anonymous reading (clone and fetch without credentials)
on a server running with ``--auth``, next to the server-wide ``--anonymous-read``.

Both live in the site database (the data directory's, or the one a cluster's nodes share), read
on each request, so a change through the CLI or the API takes effect on every running server at
once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from govc.names import RepositoryNameError, normalize_name
from storage.sitedb import SiteDatabase

if TYPE_CHECKING:
    from govc.auth import Token

ACCESS_LEVELS = ("read", "write", "admin")
_PRINCIPAL = re.compile(r"^[A-Za-z0-9_.@-]{1,100}$")

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS grants (
        principal TEXT NOT NULL, repo TEXT NOT NULL, access TEXT NOT NULL,
        PRIMARY KEY (principal, repo))""",
    """CREATE TABLE IF NOT EXISTS repo_settings (
        repo TEXT PRIMARY KEY, anonymous_read INTEGER NOT NULL DEFAULT 0)""",
)
#: How "every repository" is stored in ``grants.repo`` (a primary key column cannot be NULL).
_EVERY = "*"


class GrantError(ValueError):
    """A grant that cannot be made: bad principal, repository or access level."""


@dataclass(frozen=True, slots=True)
class Grant:
    principal: str
    repo: str | None  # None: every repository
    access: str

    @property
    def scope(self) -> str:
        return self.repo if self.repo is not None else _EVERY


def highest(levels: list[str]) -> str | None:
    return max(levels, key=ACCESS_LEVELS.index) if levels else None


class Permissions:
    """Grants and per-repository settings of one site database (see :mod:`storage.sitedb`)."""

    def __init__(self, directory: SiteDatabase) -> None:
        self.db = directory
        directory.create_tables(_SCHEMA)

    @staticmethod
    def _scope(repo: str | None) -> str:
        if repo is None or repo == _EVERY:
            return _EVERY
        try:
            return normalize_name(repo)
        except RepositoryNameError as e:
            raise GrantError(str(e)) from None

    def grant(self, principal: str, repo: str | None, access: str) -> Grant:
        """Give ``principal`` ``access`` on ``repo`` (None or ``*``: every repository), replacing
        what it had there."""
        if not _PRINCIPAL.match(principal):
            raise GrantError(f"bad principal {principal!r}: 1-100 of A-Z a-z 0-9 _ . @ -")
        if access not in ACCESS_LEVELS:
            raise GrantError(f"bad access {access!r}: one of {', '.join(ACCESS_LEVELS)}")
        scope = self._scope(repo)
        with self.db.transaction() as db:
            db.execute("INSERT INTO grants (principal, repo, access) VALUES (?, ?, ?) "
                       "ON CONFLICT (principal, repo) DO UPDATE SET access = excluded.access",
                       (principal, scope, access))
        return Grant(principal, None if scope == _EVERY else scope, access)

    def revoke(self, principal: str, repo: str | None) -> bool:
        scope = self._scope(repo)
        with self.db.transaction() as db:
            return db.execute("DELETE FROM grants WHERE principal = ? AND repo = ?",
                              (principal, scope)).rowcount > 0

    def grants(self, repo: str | None = None, principal: str | None = None) -> list[Grant]:
        """Every grant, or those that apply to ``repo`` (its own and the every-repository ones)."""
        sql = "SELECT principal, repo, access FROM grants"
        where: list[str] = []
        args: list[object] = []
        if repo is not None:
            where.append("repo IN (?, ?)")
            args += [self._scope(repo), _EVERY]
        if principal is not None:
            where.append("principal = ?")
            args.append(principal)
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self.db.query(sql + " ORDER BY principal, repo", tuple(args))
        return [Grant(str(p), None if r == _EVERY else str(r), str(a)) for p, r, a in rows]

    def level(self, token: Token, repo: str | None) -> str | None:
        """The highest access ``token`` has on ``repo`` (None: something about every repository)."""
        own = token.own_level(repo)
        levels = [own] if own is not None else []
        if token.id != 0:  # the configured admin token is not a principal
            for grant in self.grants(principal=token.name):
                if grant.repo is None or grant.repo == repo:
                    levels.append(grant.access)
        return highest(levels)

    def allows(self, token: Token, access: str, repo: str | None) -> bool:
        if token.allows(access, repo):  # the common case needs no database read
            return True
        level = self.level(token, repo)
        return level is not None and ACCESS_LEVELS.index(level) >= ACCESS_LEVELS.index(access)

    # -- per-repository settings -------------------------------------------------------------

    def anonymous_read(self, repo: str) -> bool:
        rows = self.db.query("SELECT anonymous_read FROM repo_settings WHERE repo = ?", (repo,))
        return bool(rows and rows[0][0])

    def set_anonymous_read(self, repo: str, enabled: bool) -> None:
        scope = self._scope(repo)
        with self.db.transaction() as db:
            db.execute("INSERT INTO repo_settings (repo, anonymous_read) VALUES (?, ?) "
                       "ON CONFLICT (repo) DO UPDATE SET anonymous_read = excluded.anonymous_read",
                       (scope, int(enabled)))

    def forget(self, repo: str) -> None:
        """Drop a deleted repository's grants and settings, so a new one by that name starts clean."""
        with self.db.transaction() as db:
            db.execute("DELETE FROM grants WHERE repo = ?", (repo,))
            db.execute("DELETE FROM repo_settings WHERE repo = ?", (repo,))
