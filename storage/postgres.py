"""The shared durable backend: packs, refs, reflogs and the event log in one PostgreSQL database.

It is the embedded backend (:mod:`storage.disk`) with PostgreSQL where SQLite and the pack files
were, so that several govc nodes can share one durable store. Everything lives in the ``govc``
schema of the database the DSN names (so the database can be shared with other applications)::

    govc.meta          format and schema version, checked at start-up
    govc.repos         one row per repository
    govc.packs         one row per pack: size, chunk count and govc's sidecar index (types, sizes
                       and offsets in pack order, as in the embedded backend's .govc files) so
                       loading never inflates or re-indexes an object; and, when known, the
                       pack's closure (the .tips sidecar: the ids it is exactly the closure of)
    govc.pack_chunks   the pack's bytes, byte for byte as Git wrote them, in CHUNK_SIZE pieces
    govc.refs, govc.symrefs, govc.reflog
    govc.events        the event log (an outbox): BIGSERIAL id, written with the ref change

The write order is the same contract as on disk. A pack's row and all its chunks commit in a
transaction of their own, before the ref transaction that makes its objects reachable; until that
commit no reader sees any of it, and a crash leaves nothing or an unreferenced pack (harmless).
:meth:`PostgresBackend.commit_refs` is one transaction: a compare-and-swap per ref against the
reflog entry's old value (``UPDATE ... WHERE value = old``, an ``INSERT`` that fails if the row
exists, ``DELETE ... WHERE value = old``), the symbolic refs, the reflog rows and the event row.
If any swap fails, the transaction rolls back and :class:`StaleRefInDatabase` is raised.

``NOTIFY govc_events, '<id>'`` is sent in the same transaction (PostgreSQL delivers it at commit)
only to wake nodes that wait for news; the record is the ``events`` table, which a node reads from
its last id whatever notifications it missed. Changes that log no event — a repository created or
deleted, ``HEAD`` pointed elsewhere — send ``NOTIFY govc_repos, '<name>'`` the same way, so other
nodes look at that repository again (and, as a safety net, they also look at every repository
now and then).

A commit takes a share lock on the repository's row, and deleting a repository an exclusive one:
a push that commits after another node deleted the repository fails instead of leaving refs to
packs the deletion removed, and a deletion waits for the commits already under way.

Event ids are handed out in commit order: a transaction takes a transaction-scoped advisory lock
just before it inserts its event row and keeps it until it commits. Without it, two concurrent
transactions could commit ids 8 and 7 in that order, and a reader that had already seen 8 would
skip 7 for ever. (Ids still have gaps: a rolled-back transaction, or a crash, skips some.) The
lock serialises only the last moments of transactions that log an event;
transactions touching different refs still run their compare-and-swaps in parallel.

Connections come from a small pool of our own. A pooled connection can die while idle (the
server restarted); the first statement on it then fails, which is detected and retried once on a
new connection, so a restarted server is used again without anyone re-creating the backend. When
the server cannot be reached the caller gets :class:`PostgresUnavailable` ("PostgreSQL
unreachable: ..."), a :class:`StorageError`.

The directory is also the cluster's site database (:mod:`storage.sitedb`): tokens, grants,
protections and webhooks live in the same ``govc`` schema (every connection's ``search_path``),
created and read through :meth:`PostgresDirectory.query` / :meth:`PostgresDirectory.transaction`.
"""

from __future__ import annotations

import contextlib
import logging
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.pq import TransactionStatus

from storage.disk import DataDirectoryError, decode_sidecar, encode_sidecar, pack_from_objects
from storage.errors import CorruptObject, StaleRef, StorageError, StorageUnavailable
from storage.interfaces import ZERO_OID, ReflogEntry, Snapshot
from storage.packs import PackFormatError, StoredPack, decode_closure, encode_closure, index_pack
from storage.sitedb import POSTGRESQL, portable_ddl, to_pyformat

log = logging.getLogger("govc.storage.postgres")

FORMAT = "govc-postgres"
SCHEMA_VERSION = 1
SCHEMA = "govc"
#: The channel ``commit_refs`` notifies (payload: the new event's id) to wake other nodes.
EVENT_CHANNEL = "govc_events"
#: The channel for changes without an event (payload: the repository's name): created, deleted,
#: ``HEAD`` moved.
REPO_CHANNEL = "govc_repos"
#: Pack bytes per ``bytea`` row: large enough that a pack is few rows and few round trips, small
#: enough that neither side holds more than one such piece in flight per row it sends or reads.
CHUNK_SIZE = 8 << 20
CONNECT_TIMEOUT = 5
#: Connections kept open between calls, and the most open at once (callers beyond it wait).
MAX_IDLE = 4
MAX_CONNECTIONS = 16
POOL_WAIT = 30.0

# Transaction-scoped advisory lock keys ("govc" in the high bytes, then a role number).
_SCHEMA_LOCK = 0x676F7663_00000001
_EVENT_LOCK = 0x676F7663_00000002
_RETRYABLE_STATES = ("40001", "40P01")  # serialization failure, deadlock: nothing was kept

_DDL = f"""
CREATE TABLE IF NOT EXISTS {SCHEMA}.meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS {SCHEMA}.repos (name TEXT PRIMARY KEY, created DOUBLE PRECISION NOT NULL);
CREATE TABLE IF NOT EXISTS {SCHEMA}.refs (
    repo TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (repo, name));
CREATE TABLE IF NOT EXISTS {SCHEMA}.symrefs (
    repo TEXT NOT NULL, name TEXT NOT NULL, target TEXT NOT NULL, PRIMARY KEY (repo, name));
CREATE TABLE IF NOT EXISTS {SCHEMA}.reflog (
    id BIGSERIAL PRIMARY KEY, repo TEXT NOT NULL, name TEXT NOT NULL, old TEXT NOT NULL,
    new TEXT NOT NULL, who TEXT NOT NULL, time DOUBLE PRECISION NOT NULL, message TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS reflog_by_ref ON {SCHEMA}.reflog (repo, name, id);
CREATE TABLE IF NOT EXISTS {SCHEMA}.events (
    id BIGSERIAL PRIMARY KEY, repo TEXT NOT NULL, time DOUBLE PRECISION NOT NULL,
    payload TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_by_repo ON {SCHEMA}.events (repo, id);
CREATE TABLE IF NOT EXISTS {SCHEMA}.packs (
    repo TEXT NOT NULL, name TEXT NOT NULL, seq BIGSERIAL NOT NULL, size BIGINT NOT NULL,
    chunks INTEGER NOT NULL, sidecar BYTEA NOT NULL, closure BYTEA,
    created DOUBLE PRECISION NOT NULL, PRIMARY KEY (repo, name));
CREATE TABLE IF NOT EXISTS {SCHEMA}.pack_chunks (
    repo TEXT NOT NULL, pack TEXT NOT NULL, seq INTEGER NOT NULL, data BYTEA NOT NULL,
    PRIMARY KEY (repo, pack, seq),
    FOREIGN KEY (repo, pack) REFERENCES {SCHEMA}.packs (repo, name) ON DELETE CASCADE);
-- Pack data is zlib-compressed already: spare the server a futile attempt to compress it again.
ALTER TABLE {SCHEMA}.pack_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
"""

T = TypeVar("T")
Connection = psycopg.Connection[Any]


class PostgresUnavailable(StorageUnavailable):
    """The server cannot be reached (down, restarting, network): worth retrying later."""


class PostgresSchemaError(DataDirectoryError):
    """The database holds a govc schema of another format or version."""


class StaleRefInDatabase(StaleRef):
    """The database disagrees with memory about a ref's old value: another node (or writer) moved
    it. A :class:`StaleRef`, so callers treat it as the lost race it is."""


class RepositoryDeleted(StorageError):
    """The repository was deleted (by another node) while this update was on its way."""

    def __init__(self, name: str) -> None:
        super().__init__(f"repository '{name}' was deleted meanwhile")
        self.name = name


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _storage_error(e: psycopg.Error, lost: bool) -> StorageError:
    """A driver error as the storage error callers branch on."""
    if lost:
        return PostgresUnavailable(f"PostgreSQL unreachable: {_one_line(e)}")
    return StorageError(f"PostgreSQL error: {_one_line(e)}")


class _SiteCursor:
    """What a site-database transaction hands out: statements in the portable dialect."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, args: Sequence[object] = ()) -> psycopg.Cursor[Any]:
        return self._conn.execute(to_pyformat(sql), tuple(args))

    def executemany(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        with self._conn.cursor() as cur:
            cur.executemany(to_pyformat(sql), [tuple(r) for r in rows])


def _conninfo(dsn: str) -> str:
    """The DSN with a connect timeout (a dead host must fail fast) unless it sets its own."""
    given = conninfo_to_dict(dsn)
    extra: dict[str, Any] = {}
    if "connect_timeout" not in given:
        extra["connect_timeout"] = CONNECT_TIMEOUT
    if "application_name" not in given:
        extra["application_name"] = "govc"
    return make_conninfo(dsn, **extra)


class _Pool:
    """Open connections kept for reuse, at most ``limit`` in use at once.

    Small on purpose: callers are worker threads doing short transactions, and a connection that
    broke is simply dropped (the next caller opens a new one), which is all a restart needs.
    """

    def __init__(self, conninfo: str, max_idle: int, limit: int) -> None:
        self._conninfo = conninfo
        self._max_idle = max_idle
        self._idle: list[Connection] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(limit)
        self._limit = limit
        self.closed = False

    def get(self) -> tuple[Connection, bool]:
        """A connection and whether it was reused (a reused one may have died while idle)."""
        if not self._slots.acquire(timeout=POOL_WAIT):
            raise StorageError(f"all {self._limit} PostgreSQL connections stayed busy for {POOL_WAIT:.0f} s")
        try:
            with self._lock:
                if self.closed:
                    raise StorageError("the PostgreSQL store is closed")
                if self._idle:
                    return self._idle.pop(), True
            try:
                conn = psycopg.connect(self._conninfo, autocommit=True)
                # Unqualified names (the site database's tables) live in govc's schema too.
                conn.execute(f"SET search_path TO {SCHEMA}, public")
                return conn, False
            except psycopg.Error as e:
                raise PostgresUnavailable(f"PostgreSQL unreachable: {_one_line(e)}") from e
        except BaseException:
            self._slots.release()
            raise

    def put(self, conn: Connection) -> None:
        try:
            healthy = (not conn.closed and not conn.broken
                       and conn.info.transaction_status == TransactionStatus.IDLE)
            with self._lock:
                if healthy and not self.closed and len(self._idle) < self._max_idle:
                    self._idle.append(conn)
                    return
            conn.close()
        finally:
            self._slots.release()

    def drop_idle(self) -> None:
        """Close every idle connection: when one is found dead, its siblings died with it."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def close(self) -> None:
        with self._lock:
            self.closed = True
        self.drop_idle()


class PostgresDirectory:
    """One PostgreSQL database holding any number of repositories (the counterpart of
    :class:`storage.disk.DataDirectory`); safe to share between threads. Several nodes use one
    at once, hence ``shared``."""

    dialect = POSTGRESQL
    shared = True

    def __init__(
        self, dsn: str, *, chunk_size: int = CHUNK_SIZE, max_idle: int = MAX_IDLE,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        self.dsn = dsn
        self.chunk_size = chunk_size
        #: The connection string as connections use it (what a LISTEN connection needs too).
        self.conninfo = _conninfo(dsn)
        self._pool = _Pool(self.conninfo, max_idle, max_connections)
        self._ensure_schema()

    def __repr__(self) -> str:
        return f"<PostgresDirectory {self.name}>"

    @property
    def name(self) -> str:
        """The database and server, without credentials (for logs and start-up messages)."""
        info = conninfo_to_dict(self.conninfo)
        where = info.get("host") or "local socket"
        if info.get("port"):
            where = f"{where}:{info['port']}"
        return f"{info.get('dbname', '?')} on {where}"

    def _ensure_schema(self) -> None:
        def work(conn: Connection) -> None:
            # Serialised, so that nodes starting together do not race to create the same tables.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            row = conn.execute("SELECT to_regclass(%s)", (f"{SCHEMA}.meta",)).fetchone()
            if row is None or row[0] is None:
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
                conn.execute(_DDL)
                conn.execute(
                    f"INSERT INTO {SCHEMA}.meta (key, value) VALUES ('format', %s), ('version', %s)",
                    (FORMAT, str(SCHEMA_VERSION)),
                )
                return
            meta = dict(conn.execute(f"SELECT key, value FROM {SCHEMA}.meta").fetchall())
            if meta.get("format") != FORMAT or meta.get("version") != str(SCHEMA_VERSION):
                raise PostgresSchemaError(
                    f"the database's {SCHEMA} schema holds format {meta.get('format')!r} version "
                    f"{meta.get('version')!r}; this govc reads {FORMAT!r} version {SCHEMA_VERSION}"
                )

        self.run(work, transaction=True)

    def close(self) -> None:
        self._pool.close()

    # -- running statements ----------------------------------------------------------------

    def run(self, work: Callable[[Connection], T], *, transaction: bool = False,
            retry_commit: bool = True) -> T:
        """Call ``work`` with a pooled connection (inside one transaction if asked), mapping
        failures to :class:`StorageError`.

        A reused connection that turns out dead is replaced and ``work`` tried once more: nothing
        it did can have been kept, since the transaction never committed. The one moment that is
        not true is a failure during ``COMMIT`` itself, when the outcome is unknown; with
        ``retry_commit=False`` that is reported instead of retried.
        """
        attempt = 0
        while True:
            attempt += 1
            conn, reused = self._pool.get()
            committing = False
            try:
                if transaction:
                    with conn.transaction():
                        result = work(conn)
                        committing = True
                else:
                    result = work(conn)
            except psycopg.Error as e:
                lost = conn.closed or conn.broken
                self._pool.put(conn)
                if lost:
                    self._pool.drop_idle()
                    if committing and not retry_commit:
                        raise PostgresUnavailable(
                            f"PostgreSQL unreachable while committing (the outcome is unknown): "
                            f"{_one_line(e)}"
                        ) from e
                    if reused and attempt == 1:
                        log.info("a pooled PostgreSQL connection had died (%s); retrying on a new one",
                                 _one_line(e))
                        continue
                    raise PostgresUnavailable(f"PostgreSQL unreachable: {_one_line(e)}") from e
                if e.sqlstate in _RETRYABLE_STATES and attempt < 3:
                    continue
                raise StorageError(f"PostgreSQL error: {_one_line(e)}") from e
            except BaseException:
                self._pool.put(conn)  # our own refusal (a stale ref): the transaction rolled back
                raise
            self._pool.put(conn)
            return result

    # -- the site database (storage.sitedb) -------------------------------------------------

    def query(self, sql: str, args: tuple[object, ...]) -> list[tuple[object, ...]]:
        """One statement in the site database's dialect (``?`` placeholders), autocommitted."""
        def work(conn: Connection) -> list[tuple[object, ...]]:
            cur = conn.execute(to_pyformat(sql), args)
            return [tuple(r) for r in cur.fetchall()] if cur.description is not None else []

        return self.run(work)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[_SiteCursor]:
        """Site-database statements in one transaction (see :mod:`storage.sitedb`)."""
        for attempt in (1, 2):
            conn, reused = self._pool.get()
            tx = conn.transaction()
            try:
                tx.__enter__()  # BEGIN: the first statement, so a dead connection shows here
            except psycopg.Error as e:
                lost = conn.closed or conn.broken
                self._pool.put(conn)
                if lost:
                    self._pool.drop_idle()
                    if reused and attempt == 1:
                        continue
                raise _storage_error(e, lost) from e
            break
        try:
            try:
                yield _SiteCursor(conn)
            except BaseException as exc:
                with contextlib.suppress(psycopg.Error):
                    tx.__exit__(type(exc), exc, exc.__traceback__)
                if isinstance(exc, psycopg.Error):
                    raise _storage_error(exc, conn.closed or conn.broken) from exc
                raise
            try:
                tx.__exit__(None, None, None)  # COMMIT
            except psycopg.Error as e:
                raise _storage_error(e, conn.closed or conn.broken) from e
        finally:
            if conn.closed or conn.broken:
                self._pool.drop_idle()
            self._pool.put(conn)

    def create_tables(self, statements: Sequence[str]) -> None:
        def work(conn: Connection) -> None:
            # Serialised like the schema itself: concurrent CREATE TABLE IF NOT EXISTS can fail.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            for statement in statements:
                conn.execute(portable_ddl(statement, self.dialect))  # type: ignore[arg-type]

        self.run(work, transaction=True)

    # -- repositories ------------------------------------------------------------------------

    def repo_names(self) -> list[str]:
        def work(conn: Connection) -> list[str]:
            return [r[0] for r in conn.execute(f"SELECT name FROM {SCHEMA}.repos ORDER BY name")]

        return self.run(work)

    def repo_exists(self, name: str) -> bool:
        def work(conn: Connection) -> bool:
            row = conn.execute(f"SELECT 1 FROM {SCHEMA}.repos WHERE name = %s", (name,)).fetchone()
            return row is not None

        return self.run(work)

    def create_repo(self, name: str) -> None:
        def work(conn: Connection) -> None:
            cur = conn.execute(
                f"INSERT INTO {SCHEMA}.repos (name, created) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (name, time.time()),
            )
            if cur.rowcount:
                conn.execute("SELECT pg_notify(%s, %s)", (REPO_CHANNEL, name))

        self.run(work, transaction=True)

    def delete_repo(self, name: str) -> None:
        """Forget the repository: its refs, logs and packs (its events stay in the log)."""
        def work(conn: Connection) -> None:
            # The row lock first: commits under way on other nodes finish before, later ones fail.
            conn.execute(f"SELECT 1 FROM {SCHEMA}.repos WHERE name = %s FOR UPDATE", (name,))
            conn.execute(f"DELETE FROM {SCHEMA}.repos WHERE name = %s", (name,))
            for table in ("refs", "symrefs", "reflog", "packs"):  # packs cascade to their chunks
                conn.execute(f"DELETE FROM {SCHEMA}.{table} WHERE repo = %s", (name,))
            conn.execute("SELECT pg_notify(%s, %s)", (REPO_CHANNEL, name))

        self.run(work, transaction=True)

    def delete_repo_if_empty(self, name: str) -> bool:
        """Delete the repository only if it holds no refs (an implicit creation by a push that
        changed nothing) — checked under the row lock, so a push that committed meanwhile on
        another node keeps it. True if it was deleted."""
        def work(conn: Connection) -> bool:
            row = conn.execute(f"SELECT 1 FROM {SCHEMA}.repos WHERE name = %s FOR UPDATE", (name,)).fetchone()
            if row is None:
                return False
            if conn.execute(f"SELECT 1 FROM {SCHEMA}.refs WHERE repo = %s LIMIT 1", (name,)).fetchone():
                return False
            conn.execute(f"DELETE FROM {SCHEMA}.repos WHERE name = %s", (name,))
            for table in ("symrefs", "reflog", "packs"):
                conn.execute(f"DELETE FROM {SCHEMA}.{table} WHERE repo = %s", (name,))
            conn.execute("SELECT pg_notify(%s, %s)", (REPO_CHANNEL, name))
            return True

        return self.run(work, transaction=True)

    def backend(self, name: str) -> PostgresBackend:
        return PostgresBackend(self, name)

    # -- the event log -----------------------------------------------------------------------

    def events_since(
        self, after: int, repo: str | None = None, limit: int = 1000, upto: int | None = None,
    ) -> list[tuple[int, str, float, str]]:
        """Logged events with an id above ``after`` (and at most ``upto``), oldest first (the
        replayable event log)."""
        top = (1 << 63) - 1 if upto is None else upto

        def work(conn: Connection) -> list[tuple[int, str, float, str]]:
            if repo is None:
                rows = conn.execute(
                    f"SELECT id, repo, time, payload FROM {SCHEMA}.events WHERE id > %s AND id <= %s "
                    "ORDER BY id LIMIT %s", (after, top, limit)).fetchall()
            else:
                rows = conn.execute(
                    f"SELECT id, repo, time, payload FROM {SCHEMA}.events WHERE id > %s AND id <= %s "
                    "AND repo = %s ORDER BY id LIMIT %s", (after, top, repo, limit)).fetchall()
            return [(int(i), str(r), float(t), str(p)) for i, r, t, p in rows]

        return self.run(work)

    def last_event_id(self) -> int:
        def work(conn: Connection) -> int:
            row = conn.execute(f"SELECT COALESCE(MAX(id), 0) FROM {SCHEMA}.events").fetchone()
            return int(row[0]) if row else 0

        return self.run(work)


class PostgresBackend:
    """The durable half of one repository, in a :class:`PostgresDirectory` (see the module
    docstring for the guarantees). Holds no state of its own, so threads may share it."""

    def __init__(self, directory: PostgresDirectory, name: str) -> None:
        self.directory = directory
        self.name = name

    def __repr__(self) -> str:
        return f"<PostgresBackend {self.name} in {self.directory!r}>"

    # -- start-up ----------------------------------------------------------------------------

    def load(self) -> Snapshot:
        """Packs, refs and logs as of one instant (a repeatable-read snapshot), so the refs never
        name objects of a pack committed after the packs were listed."""
        repaired: list[StoredPack] = []

        def work(conn: Connection) -> Snapshot:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            repaired.clear()  # from an attempt on a connection that died
            snap = Snapshot()
            # Event ids commit in order, so the snapshot holds exactly the events up to this one.
            top = conn.execute(f"SELECT COALESCE(MAX(id), 0) FROM {SCHEMA}.events").fetchone()
            snap.event_id = int(top[0]) if top else 0
            rows = conn.execute(
                f"SELECT name, size, chunks, sidecar, closure FROM {SCHEMA}.packs WHERE repo = %s "
                "ORDER BY seq", (self.name,), binary=True).fetchall()
            for pack_name, size, chunks, sidecar, closure in rows:
                pack = self._read_pack(conn, pack_name, size, chunks, sidecar, repaired)
                if closure is not None:  # only an optimisation: a damaged one decodes to None
                    pack.closure = decode_closure(closure, pack)
                snap.packs.append(pack)
            for ref, value in conn.execute(
                    f"SELECT name, value FROM {SCHEMA}.refs WHERE repo = %s", (self.name,)):
                snap.refs[ref] = value.encode()
            for ref, target in conn.execute(
                    f"SELECT name, target FROM {SCHEMA}.symrefs WHERE repo = %s", (self.name,)):
                snap.symrefs[ref] = target
            for ref, old, new, who, when, message in conn.execute(
                    f"SELECT name, old, new, who, time, message FROM {SCHEMA}.reflog "
                    "WHERE repo = %s ORDER BY id", (self.name,)):
                snap.reflogs.setdefault(ref, []).append(
                    ReflogEntry(old.encode(), new.encode(), who, float(when), message))
            return snap

        snap = self.directory.run(work, transaction=True)
        for pack in repaired:
            try:
                self._write_sidecar(pack)
            except StorageError as e:
                log.warning("could not store the rebuilt index of pack %s: %s", pack.name, e)
        return snap

    def pack_names(self) -> list[str]:
        """The names of the repository's packs, oldest first (a follower compares them with the
        packs it holds)."""
        def work(conn: Connection) -> list[str]:
            return [r[0] for r in conn.execute(
                f"SELECT name FROM {SCHEMA}.packs WHERE repo = %s ORDER BY seq", (self.name,))]

        return self.directory.run(work)

    def read_packs(self, names: Sequence[str]) -> list[StoredPack]:
        """These packs (those still stored), whole and indexed, oldest first."""
        if not names:
            return []
        repaired: list[StoredPack] = []

        def work(conn: Connection) -> list[StoredPack]:
            repaired.clear()
            out = []
            rows = conn.execute(
                f"SELECT name, size, chunks, sidecar, closure FROM {SCHEMA}.packs WHERE repo = %s "
                "AND name = ANY(%s) ORDER BY seq", (self.name, list(names)), binary=True).fetchall()
            for pack_name, size, chunks, sidecar, closure in rows:
                pack = self._read_pack(conn, pack_name, size, chunks, sidecar, repaired)
                if closure is not None:
                    pack.closure = decode_closure(closure, pack)
                out.append(pack)
            return out

        # One snapshot: a pack deleted (compacted away) between its row and its chunks is
        # either read whole or not at all.
        def snapshot(conn: Connection) -> list[StoredPack]:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            return work(conn)

        packs = self.directory.run(snapshot, transaction=True)
        for pack in repaired:
            with contextlib.suppress(StorageError):
                self._write_sidecar(pack)
        return packs

    def read_refs(self) -> tuple[dict[str, bytes], dict[str, str]]:
        """The repository's refs and symbolic refs as they are now."""
        def work(conn: Connection) -> tuple[dict[str, bytes], dict[str, str]]:
            refs = {n: v.encode() for n, v in conn.execute(
                f"SELECT name, value FROM {SCHEMA}.refs WHERE repo = %s", (self.name,))}
            symrefs = {n: t for n, t in conn.execute(
                f"SELECT name, target FROM {SCHEMA}.symrefs WHERE repo = %s", (self.name,))}
            return refs, symrefs

        return self.directory.run(work, transaction=True)

    def _read_pack(self, conn: Connection, pack_name: str, size: int, chunks: int, sidecar: bytes,
                   repaired: list[StoredPack]) -> StoredPack:
        pieces: list[bytes] = []
        with conn.cursor(binary=True) as cur:
            # One row per round trip: neither libpq nor Python holds more than a chunk extra.
            for seq in range(chunks):
                cur.execute(
                    f"SELECT data FROM {SCHEMA}.pack_chunks WHERE repo = %s AND pack = %s AND seq = %s",
                    (self.name, pack_name, seq))
                row = cur.fetchone()
                if row is None:
                    raise CorruptObject(f"pack {pack_name} of {self.name} lacks chunk {seq} of {chunks}")
                pieces.append(row[0])
        data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        del pieces
        if len(data) != size:
            raise CorruptObject(f"pack {pack_name} of {self.name} is {len(data)} bytes, not {size}")
        try:
            return decode_sidecar(sidecar, data)
        except (PackFormatError, ValueError, IndexError, struct.error) as e:
            log.warning("re-indexing pack %s of %s (its govc index is damaged: %s)", pack_name, self.name, e)
            pack = index_pack(data)
            repaired.append(pack)
            return pack

    def _write_sidecar(self, pack: StoredPack) -> None:
        def work(conn: Connection) -> None:
            conn.execute(f"UPDATE {SCHEMA}.packs SET sidecar = %b WHERE repo = %s AND name = %s",
                         (encode_sidecar(pack), self.name, pack.name))

        self.directory.run(work)

    # -- objects -----------------------------------------------------------------------------

    def store_pack(self, pack: StoredPack) -> None:
        """The pack's row and every chunk in one transaction of their own: all visible or none."""
        data = memoryview(pack.data)
        step = self.directory.chunk_size
        count = max(1, -(-len(data) // step))

        def work(conn: Connection) -> None:
            if conn.execute(f"SELECT 1 FROM {SCHEMA}.packs WHERE repo = %s AND name = %s",
                            (self.name, pack.name)).fetchone():
                return  # stored already (the same pack pushed twice, or by another node)
            cur = conn.execute(
                f"INSERT INTO {SCHEMA}.packs (repo, name, size, chunks, sidecar, closure, created) "
                "VALUES (%s, %s, %s, %s, %b, %b, %s) ON CONFLICT DO NOTHING",
                (self.name, pack.name, len(data), count, encode_sidecar(pack),
                 None if pack.closure is None else encode_closure(pack), time.time()))
            if cur.rowcount == 0:
                return  # another node stored it while we looked
            for seq in range(count):
                conn.execute(
                    f"INSERT INTO {SCHEMA}.pack_chunks (repo, pack, seq, data) VALUES (%s, %s, %s, %b)",
                    (self.name, pack.name, seq, data[seq * step : (seq + 1) * step]))

        self.directory.run(work, transaction=True)

    def store_objects(self, objects: Iterable[tuple[int, bytes]]) -> None:
        items = list(objects)
        if items:
            self.store_pack(index_pack(pack_from_objects(items)))

    def remove_packs(self, packs: Iterable[StoredPack]) -> None:
        names = [p.name for p in packs]
        if not names:
            return

        def work(conn: Connection) -> None:
            conn.execute(f"DELETE FROM {SCHEMA}.packs WHERE repo = %s AND name = ANY(%s)",
                         (self.name, names))

        self.directory.run(work, transaction=True)

    # -- refs --------------------------------------------------------------------------------

    def commit_refs(
        self,
        updates: Mapping[str, bytes | None],
        symrefs: Mapping[str, str],
        reflog: Iterable[tuple[str, ReflogEntry]],
        event: str | None = None,
    ) -> int | None:
        """One transaction: a compare-and-swap per ref (against the reflog entry's old value),
        the symbolic refs, the reflog rows, the event row and its NOTIFY. Raises
        :class:`StaleRefInDatabase` (changing nothing) when a ref is not where the log says.

        A ref without a reflog entry is written without a check, as the embedded backend does.
        """
        entries = list(reflog)
        expected = {name: entry.old for name, entry in entries}
        names = sorted(updates)  # one lock order for every writer: no deadlocks between nodes

        def work(conn: Connection) -> int | None:
            with conn.cursor() as cur:
                # Shared with other commits, exclusive with a deletion (see the module docstring).
                cur.execute(f"SELECT 1 FROM {SCHEMA}.repos WHERE name = %s FOR SHARE", (self.name,))
                if cur.fetchone() is None:
                    raise RepositoryDeleted(self.name)
                if names:
                    self._swap_refs(cur, names, updates, expected)
                if self._write_symrefs(cur, symrefs) and event is None:
                    cur.execute("SELECT pg_notify(%s, %s)", (REPO_CHANNEL, self.name))
                if entries:
                    cur.execute(
                        f"INSERT INTO {SCHEMA}.reflog (repo, name, old, new, who, time, message) "
                        "SELECT %s, u.name, u.old, u.new, u.who, u.time, u.message FROM unnest("
                        "%s::text[], %s::text[], %s::text[], %s::text[], %s::float8[], %s::text[]) "
                        "WITH ORDINALITY AS u(name, old, new, who, time, message, ord) ORDER BY u.ord",
                        (self.name, [n for n, _ in entries], [e.old.decode() for _, e in entries],
                         [e.new.decode() for _, e in entries], [e.who for _, e in entries],
                         [e.when for _, e in entries], [e.message for _, e in entries]))
                if event is None:
                    return None
                # Ids in commit order (see the module docstring): held until this commits.
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (_EVENT_LOCK,))
                cur.execute(f"INSERT INTO {SCHEMA}.events (repo, time, payload) VALUES (%s, %s, %s) "
                            "RETURNING id", (self.name, time.time(), event))
                row = cur.fetchone()
                assert row is not None
                event_id = int(row[0])
                cur.execute("SELECT pg_notify(%s, %s)", (EVENT_CHANNEL, str(event_id)))
                return event_id

        # Never retried across an interrupted COMMIT: if it did commit, a second try would find
        # the refs moved and report a lost race for an update that in fact went through.
        return self.directory.run(work, transaction=True, retry_commit=False)

    def _swap_refs(self, cur: psycopg.Cursor[Any], names: Sequence[str],
                   updates: Mapping[str, bytes | None], expected: Mapping[str, bytes]) -> None:
        # Lock the rows that exist in name order first: concurrent multi-ref transactions then
        # queue behind each other instead of deadlocking, and a mismatch is reported with the
        # value actually found.
        cur.execute(f"SELECT name, value FROM {SCHEMA}.refs WHERE repo = %s AND name = ANY(%s) "
                    "ORDER BY name FOR UPDATE", (self.name, list(names)))
        current = {n: v.encode() for n, v in cur.fetchall()}
        for name in names:
            old = expected.get(name)
            if old is not None and current.get(name, ZERO_OID) != old:
                raise StaleRefInDatabase(name, None if old == ZERO_OID else old, current.get(name))
        create: list[tuple[str, str]] = []
        swap: list[tuple[str, str, str]] = []
        delete: list[tuple[str, str]] = []
        force_set: list[tuple[str, str]] = []
        force_delete: list[str] = []
        for name in names:
            new, old = updates[name], expected.get(name)
            if old is None:
                if new is None:
                    force_delete.append(name)
                else:
                    force_set.append((name, new.decode()))
            elif old == ZERO_OID:
                if new is not None:
                    create.append((name, new.decode()))
            elif new is None:
                delete.append((name, old.decode()))
            else:
                swap.append((name, old.decode(), new.decode()))
        if create:
            # A row created since the check above (locking could not cover a missing row) makes
            # ON CONFLICT skip ours: fewer names come back, and that is a lost race.
            cur.execute(
                f"INSERT INTO {SCHEMA}.refs (repo, name, value) SELECT %s, u.name, u.value "
                "FROM unnest(%s::text[], %s::text[]) AS u(name, value) ORDER BY u.name "
                "ON CONFLICT (repo, name) DO NOTHING RETURNING name",
                (self.name, [n for n, _ in create], [v for _, v in create]))
            self._check_all(cur, [n for n, _ in create], expected)
        if swap:
            cur.execute(
                f"UPDATE {SCHEMA}.refs AS r SET value = u.new "
                "FROM unnest(%s::text[], %s::text[], %s::text[]) AS u(name, old, new) "
                "WHERE r.repo = %s AND r.name = u.name AND r.value = u.old RETURNING r.name",
                ([n for n, _, _ in swap], [o for _, o, _ in swap], [w for _, _, w in swap], self.name))
            self._check_all(cur, [n for n, _, _ in swap], expected)
        if delete:
            cur.execute(
                f"DELETE FROM {SCHEMA}.refs AS r USING unnest(%s::text[], %s::text[]) AS u(name, old) "
                "WHERE r.repo = %s AND r.name = u.name AND r.value = u.old RETURNING r.name",
                ([n for n, _ in delete], [o for _, o in delete], self.name))
            self._check_all(cur, [n for n, _ in delete], expected)
        if force_set:
            cur.execute(
                f"INSERT INTO {SCHEMA}.refs (repo, name, value) SELECT %s, u.name, u.value "
                "FROM unnest(%s::text[], %s::text[]) AS u(name, value) ORDER BY u.name "
                "ON CONFLICT (repo, name) DO UPDATE SET value = excluded.value",
                (self.name, [n for n, _ in force_set], [v for _, v in force_set]))
        if force_delete:
            cur.execute(f"DELETE FROM {SCHEMA}.refs WHERE repo = %s AND name = ANY(%s)",
                        (self.name, force_delete))

    def _check_all(self, cur: psycopg.Cursor[Any], names: list[str], expected: Mapping[str, bytes]) -> None:
        """Every swap of a statement must have hit its row; the first that did not is stale."""
        done = {r[0] for r in cur.fetchall()}
        for name in names:
            if name not in done:
                cur.execute(f"SELECT value FROM {SCHEMA}.refs WHERE repo = %s AND name = %s",
                            (self.name, name))
                row = cur.fetchone()
                old = expected[name]
                raise StaleRefInDatabase(name, None if old == ZERO_OID else old,
                                         row[0].encode() if row else None)

    def _write_symrefs(self, cur: psycopg.Cursor[Any], symrefs: Mapping[str, str]) -> bool:
        """Write only what changed: the full set comes with every commit, and rewriting it would
        make every writer of the repository contend for the same rows. True if anything did."""
        cur.execute(f"SELECT name, target FROM {SCHEMA}.symrefs WHERE repo = %s", (self.name,))
        have = dict(cur.fetchall())
        changed = sorted((n, t) for n, t in symrefs.items() if have.get(n) != t)
        gone = sorted(n for n in have if n not in symrefs)
        if changed:
            cur.execute(
                f"INSERT INTO {SCHEMA}.symrefs (repo, name, target) SELECT %s, u.name, u.target "
                "FROM unnest(%s::text[], %s::text[]) AS u(name, target) "
                "ON CONFLICT (repo, name) DO UPDATE SET target = excluded.target",
                (self.name, [n for n, _ in changed], [t for _, t in changed]))
        if gone:
            cur.execute(f"DELETE FROM {SCHEMA}.symrefs WHERE repo = %s AND name = ANY(%s)",
                        (self.name, gone))
        return bool(changed or gone)
