"""Reading, writing and comparing git trees by path: what the Python API needs on top of the store.

Parsed trees are cached by id (a tree never changes under its id), so repeated reads of the same
commit — time travel, watchers, validators — cost a few dictionary lookups.
"""

from __future__ import annotations

import fnmatch
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from dulwich.objects import parse_tree

from storage.errors import CorruptObject
from storage.packs import OBJ_BLOB, OBJ_COMMIT, OBJ_TREE

MODE_FILE = 0o100644
MODE_EXEC = 0o100755
MODE_LINK = 0o120000
MODE_TREE = 0o040000
MODE_GITLINK = 0o160000


class Objects(Protocol):
    def get(self, oid: bytes) -> tuple[int, bytes]: ...

    def has(self, oid: bytes) -> bool: ...


@dataclass(frozen=True, slots=True)
class Entry:
    mode: int
    oid: bytes

    @property
    def is_tree(self) -> bool:
        return self.mode == MODE_TREE


def _tree_sort_key(item: tuple[bytes, Entry]) -> bytes:
    name, entry = item
    return name + b"/" if entry.is_tree else name


def serialize_tree(entries: Mapping[bytes, Entry]) -> bytes:
    """Git's byte-exact tree encoding: entries sorted with directories compared as ``name/``."""
    out = bytearray()
    for name, entry in sorted(entries.items(), key=_tree_sort_key):
        out += b"%o %s\x00" % (entry.mode, name)
        out += bytes.fromhex(entry.oid.decode())
    return bytes(out)


def split_path(path: str) -> list[bytes]:
    parts = [p for p in path.strip("/").split("/") if p]
    if not parts or any(p in (".", "..", ".git") for p in parts):
        raise ValueError(f"invalid path {path!r}")
    return [p.encode() for p in parts]


class TreeReader:
    """Trees by id as ``{name: Entry}``, with a bounded cache shared by all readers of a repository."""

    def __init__(self, objects: Objects, capacity: int = 4096) -> None:
        self.objects = objects
        self._cache: OrderedDict[bytes, dict[bytes, Entry]] = OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()

    def entries(self, tree: bytes) -> dict[bytes, Entry]:
        cached = self._cache.get(tree)
        if cached is not None:
            return cached
        type_num, raw = self.objects.get(tree)
        if type_num != OBJ_TREE:
            raise CorruptObject(f"{tree.decode()} is not a tree")
        parsed = {name: Entry(mode, sha) for name, mode, sha in parse_tree(raw, 20)}
        with self._lock:
            self._cache[tree] = parsed
            if len(self._cache) > self._capacity:
                self._cache.popitem(last=False)
        return parsed

    def cached(self, tree: bytes) -> dict[bytes, Entry] | None:
        return self._cache.get(tree)

    def lookup(self, tree: bytes, path: str) -> Entry | None:
        """The entry at ``path`` below ``tree``, or None."""
        entry: Entry | None = None
        current = tree
        for part in split_path(path):
            if entry is not None and not entry.is_tree:
                return None
            entry = self.entries(current).get(part)
            if entry is None:
                return None
            current = entry.oid
        return entry

    def read(self, tree: bytes, path: str) -> bytes:
        """The content of the file at ``path``; KeyError if there is none."""
        entry = self.lookup(tree, path)
        if entry is None or entry.is_tree or entry.mode == MODE_GITLINK:
            raise KeyError(path)
        type_num, data = self.objects.get(entry.oid)
        if type_num != OBJ_BLOB:
            raise KeyError(path)
        return data

    def walk(self, tree: bytes, prefix: str = "") -> Iterator[tuple[str, Entry]]:
        """Every file below ``tree`` as (path, entry), in tree order."""
        for name, entry in sorted(self.entries(tree).items(), key=_tree_sort_key):
            path = f"{prefix}{name.decode('utf-8', 'surrogateescape')}"
            if entry.is_tree:
                yield from self.walk(entry.oid, path + "/")
            else:
                yield path, entry

    def diff(self, old: bytes | None, new: bytes | None, prefix: str = "") -> Iterator[FileChange]:
        """Files that differ between two trees (either may be None, meaning empty); identical
        subtrees are skipped by id, so a one-file change costs one path's worth of reads."""
        if old == new:
            return
        a = self.entries(old) if old else {}
        b = self.entries(new) if new else {}
        for name in sorted(set(a) | set(b)):
            ea, eb = a.get(name), b.get(name)
            if ea == eb:
                continue
            path = f"{prefix}{name.decode('utf-8', 'surrogateescape')}"
            a_tree = ea.oid if ea is not None and ea.is_tree else None
            b_tree = eb.oid if eb is not None and eb.is_tree else None
            if a_tree or b_tree:
                yield from self.diff(a_tree, b_tree, path + "/")
            a_file = ea if ea is not None and not ea.is_tree else None
            b_file = eb if eb is not None and not eb.is_tree else None
            if a_file != b_file:
                yield FileChange(path, a_file, b_file)


@dataclass(frozen=True, slots=True)
class FileChange:
    """One changed path: ``old``/``new`` are None for an added/removed file."""

    path: str
    old: Entry | None
    new: Entry | None

    @property
    def kind(self) -> str:
        return "added" if self.old is None else "removed" if self.new is None else "modified"

    def matches(self, pattern: str) -> bool:
        """Glob match on the whole path or on its file name (``*.tf`` matches ``env/main.tf``)."""
        return fnmatch.fnmatchcase(self.path, pattern) or fnmatch.fnmatchcase(
            self.path.rsplit("/", 1)[-1], pattern
        )


def build_tree(
    reader: TreeReader,
    add_object: AddObject,
    base: bytes | None,
    changes: Mapping[str, tuple[bytes, int] | None],
) -> bytes:
    """A new tree: ``base`` with each path set to (blob id, mode) or removed (None). Only the
    subtrees on changed paths are rebuilt; empty directories disappear, as in git."""
    grouped: dict[bytes, dict[str, tuple[bytes, int] | None]] = {}
    direct: dict[bytes, tuple[bytes, int] | None] = {}
    for path, change in changes.items():
        parts = split_path(path)
        if len(parts) == 1:
            direct[parts[0]] = change
        else:
            rest = "/".join(p.decode("utf-8", "surrogateescape") for p in parts[1:])
            grouped.setdefault(parts[0], {})[rest] = change
    entries = dict(reader.entries(base)) if base else {}
    for name, change in direct.items():
        if change is None:
            entries.pop(name, None)
        else:
            entries[name] = Entry(change[1], change[0])
    for name, sub in grouped.items():
        existing = entries.get(name)
        sub_base = existing.oid if existing is not None and existing.is_tree else None
        new_sub = build_tree(reader, add_object, sub_base, sub)
        if new_sub == EMPTY_TREE:
            entries.pop(name, None)
        else:
            entries[name] = Entry(MODE_TREE, new_sub)
    return add_object(OBJ_TREE, serialize_tree(entries))


class AddObject(Protocol):
    def __call__(self, type_num: int, content: bytes) -> bytes: ...


EMPTY_TREE = b"4b825dc642cb6eb9a060e54bf8d69288fbee4904"


@dataclass(frozen=True, slots=True)
class Identity:
    name: str
    email: str

    @classmethod
    def parse(cls, text: str) -> Identity:
        """``"Name <email>"`` (or a bare name, given a placeholder address)."""
        text = text.strip()
        if "<" in text and text.endswith(">"):
            name, _, email = text[:-1].partition("<")
            return cls(name.strip(), email.strip())
        return cls(text, f"{text.replace(' ', '.').lower()}@govc.invalid")

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>"


def serialize_commit(
    tree: bytes, parents: list[bytes], author: Identity, committer: Identity, when: int, message: str,
    tz: str = "+0000",
) -> bytes:
    lines = [b"tree " + tree]
    lines += [b"parent " + p for p in parents]
    lines.append(f"author {author} {when} {tz}".encode())
    lines.append(f"committer {committer} {when} {tz}".encode())
    body = message if message.endswith("\n") else message + "\n"
    return b"\n".join(lines) + b"\n\n" + body.encode()


@dataclass(frozen=True, slots=True)
class Commit:
    """A commit as the API shows it."""

    oid: str
    tree: str
    parents: tuple[str, ...]
    author: str
    committer: str
    time: int
    message: str

    @classmethod
    def parse(cls, oid: bytes, raw: bytes) -> Commit:
        head, _, message = raw.partition(b"\n\n")
        tree, author, committer, when = b"", b"", b"", 0
        parents: list[str] = []
        for line in head.split(b"\n"):
            key, _, value = line.partition(b" ")
            if key == b"tree":
                tree = value
            elif key == b"parent":
                parents.append(value.decode())
            elif key == b"author":
                author = value.rsplit(b" ", 2)[0]
            elif key == b"committer":
                committer = value.rsplit(b" ", 2)[0]
                try:
                    when = int(value.rsplit(b" ", 2)[1])
                except (IndexError, ValueError):
                    when = 0
        return cls(oid.decode(), tree.decode(), tuple(parents), author.decode("utf-8", "replace"),
                   committer.decode("utf-8", "replace"), when, message.decode("utf-8", "replace"))


def load_commit(objects: Objects, oid: bytes) -> Commit:
    type_num, raw = objects.get(oid)
    if type_num != OBJ_COMMIT:
        raise CorruptObject(f"{oid.decode()} is not a commit")
    return Commit.parse(oid, raw)
