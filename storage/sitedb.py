"""The site database: the one role the server-wide records need (tokens, grants, protections,
webhooks and their deliveries), whatever holds them.

Those stores were written against SQLite; with several nodes they must live in the PostgreSQL
database the nodes share, or a token made on one node would be unknown to the next. Rather than
two copies of each store, they speak one small dialect and each database adapts it:

* statements use ``?`` placeholders (PostgreSQL's driver wants ``%s``: :func:`to_pyformat`);
* tables are declared as SQLite writes them (``INTEGER PRIMARY KEY AUTOINCREMENT``, ``REAL``,
  ``INTEGER``) and :func:`portable_ddl` turns them into PostgreSQL's types (``BIGSERIAL``,
  ``DOUBLE PRECISION`` — PostgreSQL's ``REAL`` is a 4-byte float that would round timestamps —
  and ``BIGINT``);
* new ids come back through ``INSERT ... RETURNING id`` (both have it; ``lastrowid`` is SQLite's
  alone), upserts are ``INSERT ... ON CONFLICT (...) DO UPDATE`` (both), and nothing else
  outside the common subset is used.

A compare-and-set that several nodes may race on is written as one conditional ``UPDATE`` and
judged by its ``rowcount``: under PostgreSQL's READ COMMITTED the second writer waits for the
first and re-checks the condition against the row the first committed, and SQLite's writers
are serialised anyway, so the same statement is exactly-once on both.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Sequence
from typing import Any, Protocol

SQLITE = "sqlite"
POSTGRESQL = "postgresql"


class SiteResult(Protocol):
    """What ``execute`` returns: a DB-API cursor's reading half."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class SiteCursor(Protocol):
    """What :meth:`SiteDatabase.transaction` yields: statements inside one transaction."""

    def execute(self, sql: str, args: Sequence[object] = ...) -> SiteResult: ...

    def executemany(self, sql: str, rows: Sequence[Sequence[object]]) -> object: ...


class SiteDatabase(Protocol):
    """Where the server-wide records live: a data directory's SQLite, a private in-memory
    SQLite, or the cluster's PostgreSQL database."""

    #: ``"sqlite"`` or ``"postgresql"``, for the rare statement that must differ.
    dialect: str
    #: True when other processes (other nodes) use the same records at the same time.
    shared: bool

    def query(self, sql: str, args: tuple[object, ...]) -> list[tuple[object, ...]]:
        """Run one statement on its own (autocommit) and return its rows."""
        ...

    def transaction(self) -> contextlib.AbstractContextManager[SiteCursor]:
        """Statements that commit together or not at all (rolled back when the block raises)."""
        ...

    def create_tables(self, statements: Sequence[str]) -> None:
        """Run ``CREATE TABLE/INDEX IF NOT EXISTS`` statements (SQLite's spelling), once, even
        when several nodes start at the same moment."""
        ...


_PLACEHOLDER = re.compile(r"\?")


@functools.lru_cache(maxsize=512)
def to_pyformat(sql: str) -> str:
    """``?`` placeholders as psycopg's ``%s`` (and a literal ``%`` doubled). The statements are
    our own and hold no ``?`` inside string literals."""
    return _PLACEHOLDER.sub("%s", sql.replace("%", "%%"))


_DDL_RULES = (
    (re.compile(r"\bINTEGER\s+PRIMARY\s+KEY\s+AUTOINCREMENT\b", re.I), "BIGSERIAL PRIMARY KEY"),
    (re.compile(r"\bINTEGER\b", re.I), "BIGINT"),
    (re.compile(r"\bREAL\b", re.I), "DOUBLE PRECISION"),
)


def portable_ddl(statement: str, dialect: str) -> str:
    """A table or index declaration in SQLite's spelling, for ``dialect``."""
    if dialect == SQLITE:
        return statement
    for pattern, replacement in _DDL_RULES:
        statement = pattern.sub(replacement, statement)
    return statement
