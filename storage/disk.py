"""The embedded durable backend: Git pack files on disk, refs and logs in SQLite.

Layout of a data directory::

    DATA/govc.json                          format marker, checked at start-up
    DATA/govc.db (+ -wal, -shm)             SQLite (WAL, synchronous=FULL): repositories, refs,
                                            symbolic refs, reflog, event log
    DATA/repos/<name>.git/objects/pack/     pack-<sha>.pack, .idx (git's own index, so the
                                            directory reads as a bare repository's object store)
                                            and .govc (govc's index: ids, offsets, types and
                                            sizes in pack order and the lookup order, so start-up
                                            never inflates an object nor sorts an id)

The write order is what makes "acknowledged" mean "durable": a pack is written to a temporary
name, fsynced, renamed into place and its directory fsynced before the SQLite transaction that
moves refs to its objects commits. A crash before that commit leaves an unreferenced pack (loaded
and harmless); a crash during it leaves the transaction out, as SQLite guarantees.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import sqlite3
import struct
import sys
import threading
import time
import zlib
from array import array
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from dulwich.pack import write_pack_index
from zlib_ng import zlib_ng

from storage.errors import StaleRef, StorageError
from storage.interfaces import ReflogEntry, Snapshot
from storage.packs import (
    PackFormatError,
    StoredPack,
    decode_closure,
    encode_closure,
    encode_object_header,
    index_pack,
)
from storage.sitedb import SQLITE

log = logging.getLogger("govc.storage.disk")

FORMAT = "govc-data"
FORMAT_VERSION = 1
SIDECAR_MAGIC = b"GOVCIDX2"
SIDECAR_MAGIC_V1 = b"GOVCIDX1"  # read, never written: no lookup order

_SCHEMA = """
CREATE TABLE IF NOT EXISTS repos (name TEXT PRIMARY KEY, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS refs (
    repo TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (repo, name));
CREATE TABLE IF NOT EXISTS symrefs (
    repo TEXT NOT NULL, name TEXT NOT NULL, target TEXT NOT NULL, PRIMARY KEY (repo, name));
CREATE TABLE IF NOT EXISTS reflog (
    id INTEGER PRIMARY KEY AUTOINCREMENT, repo TEXT NOT NULL, name TEXT NOT NULL,
    old TEXT NOT NULL, new TEXT NOT NULL, who TEXT NOT NULL, time REAL NOT NULL,
    message TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS reflog_by_ref ON reflog (repo, name, id);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, repo TEXT NOT NULL, time REAL NOT NULL,
    payload TEXT NOT NULL);
"""


class DataDirectoryError(StorageError):
    """A data directory govc cannot use: another format version, unreadable, not writable."""


class StaleRefOnDisk(StaleRef):
    """The database disagrees with memory about a ref's old value (another writer?). A
    :class:`StaleRef`, so callers treat it as the lost race it is, whatever the backend."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durably(path: Path, data: bytes | Iterable[bytes]) -> None:
    """Write to ``path.tmp-*``, fsync, rename into place: the file is whole or absent."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    with open(tmp, "wb") as f:
        if isinstance(data, bytes | bytearray | memoryview):
            f.write(data)
        else:
            for chunk in data:
                f.write(chunk)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _little_endian(values: array) -> bytes:
    if sys.byteorder != "little":
        values = array(values.typecode, values)
        values.byteswap()
    return values.tobytes()


def _from_little_endian(typecode: str, raw: bytes) -> array:
    values = array(typecode)
    values.frombytes(raw)
    if sys.byteorder != "little":
        values.byteswap()
    return values


def encode_sidecar(pack: StoredPack) -> bytes:
    """govc's own index: everything :class:`StoredPack` needs, checksummed.

    Version 2: magic, count, pack checksum, the binary ids in pack order, offsets (n + 1),
    types, sizes, then the positions in lookup order (:attr:`StoredPack.order`), so loading
    builds nothing per object. Integers are little-endian, 8 bytes (4 for positions).
    """
    n = len(pack)
    body = bytearray(SIDECAR_MAGIC)
    body += struct.pack(">I", n)
    body += pack.checksum
    body += pack.ids
    body += _little_endian(array("Q", pack.offsets))
    body += bytes(pack.types)
    body += _little_endian(array("Q", pack.sizes))
    body += _little_endian(array("I", pack.order))
    body += hashlib.sha1(body).digest()
    return bytes(body)


def sidecar_is_current(raw: bytes) -> bool:
    """Written in the version this govc writes (older ones are read, and worth rewriting)."""
    return raw[:8] == SIDECAR_MAGIC


def decode_sidecar(raw: bytes, data: bytes) -> StoredPack:
    """The pack ``data`` indexed by a sidecar of version 2 or 1 (version 1 lacks the lookup
    order, which is then sorted anew)."""
    magic = raw[:8]
    if magic not in (SIDECAR_MAGIC, SIDECAR_MAGIC_V1) or hashlib.sha1(raw[:-20]).digest() != raw[-20:]:
        raise PackFormatError("bad govc pack index")
    (n,) = struct.unpack(">I", raw[8:12])
    if raw[12:32] != data[-20:]:
        raise PackFormatError("govc pack index belongs to another pack")
    pos = 32
    ids = raw[pos : pos + 20 * n]
    pos += 20 * n
    offsets = _from_little_endian("Q", raw[pos : pos + 8 * (n + 1)])
    pos += 8 * (n + 1)
    types = bytearray(raw[pos : pos + n])
    pos += n
    sizes = _from_little_endian("Q", raw[pos : pos + 8 * n])
    pos += 8 * n
    order = None
    if magic == SIDECAR_MAGIC:
        order = _from_little_endian("I", raw[pos : pos + 4 * n])
        pos += 4 * n
    if pos != len(raw) - 20:
        raise PackFormatError("govc pack index has the wrong length")
    return StoredPack.from_index(data, ids, offsets, types, sizes, order)


def git_index(pack: StoredPack) -> bytes:
    """Git's ``.idx`` (version 2) for a stored pack, so stock git can read the directory."""
    data, ids, offsets = pack.data, pack.ids, pack.offsets
    entries = []
    for i in range(len(pack)):
        start, end = offsets[i], offsets[i + 1]
        entries.append((ids[20 * i : 20 * i + 20], start, zlib.crc32(memoryview(data)[start:end])))
    entries.sort()

    class _Buffer:
        def __init__(self) -> None:
            self.parts: list[bytes] = []

        def write(self, b: bytes) -> int:
            self.parts.append(bytes(b))
            return len(b)

    out = _Buffer()
    write_pack_index(out, entries, pack.checksum)  # type: ignore[arg-type]
    return b"".join(out.parts)


def pack_from_objects(objects: Sequence[tuple[int, bytes]]) -> bytes:
    """A pack of whole objects: how objects made by the API reach disk in Git's format."""
    body = bytearray(b"PACK" + struct.pack(">II", 2, len(objects)))
    for type_num, content in objects:
        body += encode_object_header(type_num, len(content))
        body += zlib_ng.compress(content, 1)
    body += hashlib.sha1(body).digest()
    return bytes(body)


class DataDirectory:
    """One data directory: its SQLite database and the pack directories of its repositories.

    It is also a :class:`storage.sitedb.SiteDatabase` (tokens, grants, protections, webhooks):
    one process owns a data directory, so its records are not ``shared``.
    """

    dialect = SQLITE
    shared = False

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._check_format()
            self._db = sqlite3.connect(
                self.path / "govc.db", isolation_level=None, check_same_thread=False, timeout=30
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as e:
            raise DataDirectoryError(f"cannot use data directory {self.path}: {e}") from None
        self._lock = threading.Lock()

    def _check_format(self) -> None:
        marker = self.path / "govc.json"
        if marker.exists():
            try:
                meta = json.loads(marker.read_text())
            except (OSError, ValueError) as e:
                raise DataDirectoryError(f"{marker} is unreadable: {e}") from None
            if not isinstance(meta, dict):
                raise DataDirectoryError(f"{marker} is damaged: expected a JSON object")
            if meta.get("format") != FORMAT or meta.get("version") != FORMAT_VERSION:
                raise DataDirectoryError(
                    f"{self.path} holds data of format {meta.get('format')!r} version "
                    f"{meta.get('version')!r}; this govc reads {FORMAT!r} version {FORMAT_VERSION}"
                )
            return
        if any(p.name != "govc.json" for p in self.path.iterdir()) and not (self.path / "govc.db").exists():
            raise DataDirectoryError(f"{self.path} is not empty and is not a govc data directory")
        write_durably(marker, json.dumps({"format": FORMAT, "version": FORMAT_VERSION}).encode())
        _fsync_dir(self.path)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- repositories ------------------------------------------------------------------------

    def repo_names(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT name FROM repos ORDER BY name")]

    def pack_dir(self, name: str) -> Path:
        return self.path / "repos" / f"{name}.git" / "objects" / "pack"

    def create_repo(self, name: str) -> None:
        pack_dir = self.pack_dir(name)
        pack_dir.mkdir(parents=True, exist_ok=True)
        repo_dir = pack_dir.parent.parent
        # A bare-repository skeleton, so that stock git can open the directory as it is.
        (repo_dir / "refs").mkdir(exist_ok=True)
        with contextlib.suppress(FileExistsError):
            write_durably(repo_dir / "HEAD", b"ref: refs/heads/main\n")
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO repos (name, created) VALUES (?, ?)", (name, time.time())
            )

    def delete_repo(self, name: str) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for table in ("repos", "refs", "symrefs", "reflog"):
                    column = "name" if table == "repos" else "repo"
                    self._db.execute(f"DELETE FROM {table} WHERE {column} = ?", (name,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        root = self.path / "repos"
        shutil.rmtree(root / f"{name}.git", ignore_errors=True)
        parent = (root / name).parent  # "team/app": drop "team/" too once nothing else is in it
        while parent != root and parent.is_relative_to(root):
            try:
                parent.rmdir()
            except OSError:  # not empty (another repository lives there) or already gone
                break
            parent = parent.parent

    def events_since(
        self, after: int, repo: str | None = None, limit: int = 1000
    ) -> list[tuple[int, str, float, str]]:
        """Logged events with an id above ``after``, oldest first (the replayable event log)."""
        if repo is None:
            rows = self.query(
                "SELECT id, repo, time, payload FROM events WHERE id > ? ORDER BY id LIMIT ?", (after, limit)
            )
        else:
            rows = self.query(
                "SELECT id, repo, time, payload FROM events WHERE id > ? AND repo = ? ORDER BY id LIMIT ?",
                (after, repo, limit))
        return [(int(r[0]), str(r[1]), float(r[2]), str(r[3])) for r in rows]  # type: ignore[arg-type]

    def last_event_id(self) -> int:
        row = self.query("SELECT COALESCE(MAX(id), 0) FROM events", ())
        return int(row[0][0])  # type: ignore[call-overload]

    def backend(self, name: str) -> DiskBackend:
        return DiskBackend(self, name)

    # -- used by DiskBackend -----------------------------------------------------------------

    def transaction(self) -> _Transaction:
        return _Transaction(self)

    def create_tables(self, statements: Sequence[str]) -> None:
        with self.transaction() as db:
            for statement in statements:
                db.execute(statement)

    def query(self, sql: str, args: tuple[object, ...]) -> list[tuple[object, ...]]:
        with self._lock:
            return list(self._db.execute(sql, args))


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` under the directory's lock; rolls back on error."""

    def __init__(self, directory: DataDirectory) -> None:
        self.d = directory

    def __enter__(self) -> sqlite3.Connection:
        self.d._lock.acquire()
        try:
            self.d._db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.d._lock.release()
            raise
        return self.d._db

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            if exc_type is None:
                self.d._db.execute("COMMIT")
            else:
                self.d._db.execute("ROLLBACK")
        finally:
            self.d._lock.release()


class DiskBackend:
    """The durable half of one repository (see the module docstring for the guarantees)."""

    def __init__(self, directory: DataDirectory, name: str) -> None:
        self.directory = directory
        self.name = name
        self.pack_dir = directory.pack_dir(name)

    # -- start-up ----------------------------------------------------------------------------

    def load(self) -> Snapshot:
        snap = Snapshot()
        self.pack_dir.mkdir(parents=True, exist_ok=True)
        for stray in self.pack_dir.glob(".*.tmp-*"):
            stray.unlink(missing_ok=True)  # a write a crash interrupted; never acknowledged
        for index in [*self.pack_dir.glob("pack-*.idx"), *self.pack_dir.glob("pack-*.govc"),
                      *self.pack_dir.glob("pack-*.tips")]:
            if not index.with_suffix(".pack").exists():
                index.unlink(missing_ok=True)  # indexes of a pack whose write a crash cut short
        for pack_path in sorted(self.pack_dir.glob("pack-*.pack"), key=lambda p: p.stat().st_mtime):
            snap.packs.append(self._load_pack(pack_path))
        d = self.directory
        for name, value in d.query("SELECT name, value FROM refs WHERE repo = ?", (self.name,)):
            snap.refs[str(name)] = str(value).encode()
        for name, target in d.query("SELECT name, target FROM symrefs WHERE repo = ?", (self.name,)):
            snap.symrefs[str(name)] = str(target)
        rows = d.query(
            "SELECT name, old, new, who, time, message FROM reflog WHERE repo = ? ORDER BY id",
            (self.name,),
        )
        for name, old, new, who, when, message in rows:
            entry = ReflogEntry(str(old).encode(), str(new).encode(), str(who), float(when), str(message))  # type: ignore[arg-type]
            snap.reflogs.setdefault(str(name), []).append(entry)
        return snap

    def _load_pack(self, pack_path: Path) -> StoredPack:
        pack = self._load_indexed_pack(pack_path)
        # The optional .tips sidecar: which ids the pack is the exact closure of (full clones
        # then send it as it is); ignored when missing or damaged, it is only an optimisation.
        with contextlib.suppress(OSError):
            pack.closure = decode_closure(pack_path.with_suffix(".tips").read_bytes(), pack)
        return pack

    def _load_indexed_pack(self, pack_path: Path) -> StoredPack:
        data = pack_path.read_bytes()
        sidecar = pack_path.with_suffix(".govc")
        try:
            raw = sidecar.read_bytes()
            pack = decode_sidecar(raw, data)
            if not sidecar_is_current(raw):
                with contextlib.suppress(OSError):
                    write_durably(sidecar, encode_sidecar(pack))
            return pack
        except (OSError, PackFormatError, struct.error, ValueError):
            log.warning("re-indexing %s (its govc index is missing or damaged)", pack_path.name)
            pack = index_pack(data)
            with contextlib.suppress(OSError):
                write_durably(sidecar, encode_sidecar(pack))
            return pack

    # -- writes ------------------------------------------------------------------------------

    def store_pack(self, pack: StoredPack) -> None:
        base = self.pack_dir / f"pack-{pack.name}"
        pack_path = base.with_suffix(".pack")
        if pack_path.exists() and pack_path.with_suffix(".govc").exists():
            return
        try:
            self.pack_dir.mkdir(parents=True, exist_ok=True)
            # Indexes first: a .pack is only ever visible with its indexes already beside it.
            write_durably(base.with_suffix(".idx"), git_index(pack))
            write_durably(base.with_suffix(".govc"), encode_sidecar(pack))
            if pack.closure is not None:
                write_durably(base.with_suffix(".tips"), encode_closure(pack))
            write_durably(pack_path, pack.data)
            _fsync_dir(self.pack_dir)
        except OSError as e:
            raise StorageError(f"cannot store objects: {e.strerror or e}") from e

    def store_objects(self, objects: Iterable[tuple[int, bytes]]) -> None:
        items = list(objects)
        if items:
            self.store_pack(index_pack(pack_from_objects(items)))

    def remove_packs(self, packs: Iterable[StoredPack]) -> None:
        for pack in packs:
            base = self.pack_dir / f"pack-{pack.name}"
            for suffix in (".pack", ".idx", ".govc", ".tips"):
                base.with_suffix(suffix).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            _fsync_dir(self.pack_dir)

    def commit_refs(
        self,
        updates: Mapping[str, bytes | None],
        symrefs: Mapping[str, str],
        reflog: Iterable[tuple[str, ReflogEntry]],
        event: str | None = None,
    ) -> int | None:
        """One SQLite transaction: ref values (compare-and-swap against the log's old values),
        symbolic refs, reflog rows and the event record. Raises and changes nothing on failure."""
        entries = list(reflog)
        old_values = {name: entry.old for name, entry in entries}
        try:
            with self.directory.transaction() as db:
                for name, new in updates.items():
                    old = old_values.get(name)
                    row = db.execute(
                        "SELECT value FROM refs WHERE repo = ? AND name = ?", (self.name, name)
                    ).fetchone()
                    current = row[0].encode() if row else b"0" * 40
                    if old is not None and current != old:
                        raise StaleRefOnDisk(name, None if old == b"0" * 40 else old,
                                             row[0].encode() if row else None)
                    if new is None:
                        db.execute("DELETE FROM refs WHERE repo = ? AND name = ?", (self.name, name))
                    else:
                        db.execute(
                            "INSERT INTO refs (repo, name, value) VALUES (?, ?, ?) "
                            "ON CONFLICT (repo, name) DO UPDATE SET value = excluded.value",
                            (self.name, name, new.decode()),
                        )
                db.execute("DELETE FROM symrefs WHERE repo = ?", (self.name,))
                db.executemany(
                    "INSERT INTO symrefs (repo, name, target) VALUES (?, ?, ?)",
                    [(self.name, n, t) for n, t in symrefs.items()],
                )
                db.executemany(
                    "INSERT INTO reflog (repo, name, old, new, who, time, message) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(self.name, n, e.old.decode(), e.new.decode(), e.who, e.when, e.message)
                     for n, e in entries],
                )
                event_id = None
                if event is not None:
                    cursor = db.execute(
                        "INSERT INTO events (repo, time, payload) VALUES (?, ?, ?)",
                        (self.name, time.time(), event),
                    )
                    event_id = cursor.lastrowid
        except sqlite3.Error as e:
            raise StorageError(f"cannot record the ref update: {e}") from e
        return event_id
