"""The object graph over a store: parsed commits and trees, and what a fetch must send.

Parsing is cached (commits and trees never change under their id), so repeated clones and fetches
walk dictionaries instead of inflating and parsing objects again.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Set
from dataclasses import dataclass
from typing import Protocol

from dulwich.objects import parse_tree

from storage.errors import CorruptObject
from storage.filters import ObjectFilter
from storage.packs import OBJ_BLOB, OBJ_COMMIT, OBJ_TAG, OBJ_TREE

GITLINK_MODE = 0o160000
TREE_MODE = 0o040000


class ObjectReader(Protocol):
    def has(self, oid: bytes) -> bool: ...

    def get(self, oid: bytes) -> tuple[int, bytes]: ...

    def type_of(self, oid: bytes) -> int: ...


@dataclass(frozen=True, slots=True)
class CommitInfo:
    tree: bytes
    parents: tuple[bytes, ...]
    time: int


def parse_commit(raw: bytes) -> CommitInfo:
    """The fields of a commit the graph needs: tree, parents and committer time."""
    tree = b""
    parents: list[bytes] = []
    time = 0
    for line in raw.split(b"\n"):
        if not line:
            break
        if line.startswith(b"tree "):
            tree = line[5:]
        elif line.startswith(b"parent "):
            parents.append(line[7:])
        elif line.startswith(b"committer "):
            try:
                time = int(line.rsplit(b" ", 2)[-2])
            except (ValueError, IndexError):
                time = 0
    if len(tree) != 40:
        raise CorruptObject("commit without a valid tree line")
    return CommitInfo(tree, tuple(parents), time)


def parse_tag_target(raw: bytes) -> tuple[bytes, int]:
    """Object id and type number a tag points at."""
    target = b""
    type_num = 0
    for line in raw.split(b"\n"):
        if not line:
            break
        if line.startswith(b"object "):
            target = line[7:]
        elif line.startswith(b"type "):
            type_num = {b"commit": OBJ_COMMIT, b"tree": OBJ_TREE, b"blob": OBJ_BLOB,
                        b"tag": OBJ_TAG}.get(line[5:], 0)
    if len(target) != 40 or not type_num:
        raise CorruptObject("tag without a valid object/type header")
    return target, type_num


def tree_children(raw: bytes) -> tuple[tuple[bytes, bool], ...]:
    """A tree's entries as (oid, is_tree), without submodule links (gitlinks)."""
    try:
        parsed = parse_tree(raw, 20)
    except Exception as e:
        raise CorruptObject(f"malformed tree: {e}") from None
    return tuple(
        (sha, (mode & 0o170000) == TREE_MODE)
        for _name, mode, sha in parsed
        if (mode & 0o170000) != GITLINK_MODE
    )


class LinkCollector:
    """Collects, while a pack is indexed, what each received object points at.

    Connectivity is then checked without inflating anything twice, and the parsed commits and
    trees can prime an :class:`ObjectGraph` once the pack is accepted.
    """

    def __init__(self) -> None:
        self.links: dict[bytes, tuple[bytes, ...]] = {}
        self.commits: dict[bytes, CommitInfo] = {}
        self.trees: dict[bytes, tuple[tuple[bytes, bool], ...]] = {}

    def __call__(self, oid: bytes, type_num: int, content: bytes) -> None:
        if type_num == OBJ_COMMIT:
            info = parse_commit(content)
            self.commits[oid] = info
            self.links[oid] = (info.tree, *info.parents)
        elif type_num == OBJ_TREE:
            entries = tree_children(content)
            self.trees[oid] = entries
            self.links[oid] = tuple(sha for sha, _ in entries)
        elif type_num == OBJ_TAG:
            self.links[oid] = (parse_tag_target(content)[0],)
        else:
            self.links[oid] = ()

    def first_missing(self, tips: Iterable[bytes], stored: ObjectReader) -> bytes | None:
        """The first object reachable from ``tips`` that is neither received nor stored.

        Stored objects are complete by induction (every earlier write was checked), so the walk
        never enters them.
        """
        seen: set[bytes] = set()
        stack = list(tips)
        while stack:
            oid = stack.pop()
            if oid in seen:
                continue
            seen.add(oid)
            if stored.has(oid):
                continue
            links = self.links.get(oid)
            if links is None:
                return oid
            stack.extend(links)
        return None


class ObjectGraph:
    """Reachability over one object reader, with parse caches shared by all requests."""

    def __init__(self, objects: ObjectReader) -> None:
        self.objects = objects
        self._commits: dict[bytes, CommitInfo] = {}
        self._trees: dict[bytes, tuple[tuple[bytes, bool], ...]] = {}
        self._lock = threading.Lock()

    def commit(self, oid: bytes) -> CommitInfo:
        info = self._commits.get(oid)
        if info is None:
            type_num, raw = self.objects.get(oid)
            if type_num != OBJ_COMMIT:
                raise CorruptObject(f"{oid.decode()} is not a commit")
            info = parse_commit(raw)
            self._commits[oid] = info
        return info

    def tree(self, oid: bytes) -> tuple[tuple[bytes, bool], ...]:
        """Children of a tree as (oid, is_tree); submodule entries (gitlinks) are skipped."""
        entries = self._trees.get(oid)
        if entries is None:
            type_num, raw = self.objects.get(oid)
            if type_num != OBJ_TREE:
                raise CorruptObject(f"{oid.decode()} is not a tree")
            entries = self._trees[oid] = tree_children(raw)
        return entries

    def adopt(self, collected: LinkCollector) -> None:
        """Keep what a push already parsed, so the next fetch does not parse it again."""
        self._commits.update(collected.commits)
        self._trees.update(collected.trees)

    def peel(self, oid: bytes) -> tuple[bytes, int]:
        """Follow tags down to the first non-tag object."""
        type_num = self.objects.type_of(oid)
        seen = 0
        while type_num == OBJ_TAG:
            _, raw = self.objects.get(oid)
            oid, type_num = parse_tag_target(raw)
            seen += 1
            if seen > 100:
                raise CorruptObject("tag chain too long")
        return oid, type_num

    def ancestors(
        self,
        commits: Iterable[bytes],
        stop: Set[bytes] | None = None,
        cut: Set[bytes] = frozenset(),
    ) -> set[bytes]:
        """Every commit reachable from ``commits`` (inclusive), not crossing into ``stop`` and
        not going past the commits in ``cut`` (shallow boundaries: included, parents not)."""
        seen: set[bytes] = set()
        stack = [c for c in commits if not stop or c not in stop]
        while stack:
            c = stack.pop()
            if c in seen:
                continue
            seen.add(c)
            if c in cut:
                continue
            for p in self.commit(c).parents:
                if p not in seen and (stop is None or p not in stop):
                    stack.append(p)
        return seen

    def shallow_by_depth(
        self, starts: Iterable[bytes], depth: int
    ) -> tuple[set[bytes], set[bytes]]:
        """Git's ``get_shallow_commits``: walking ``depth`` commits down from ``starts`` (which
        count as the first), return (commits that become shallow, commits within the depth).

        A commit becomes shallow at the last level if it has parents; the walk is breadth-first,
        so a commit reachable along several paths gets its shortest distance.
        """
        shallow: set[bytes] = set()
        within: set[bytes] = set()
        level = {c: 1 for c in starts}
        queue = deque(level)
        while queue:
            c = queue.popleft()
            d = level[c]
            parents = self.commit(c).parents
            if d >= depth:
                if parents:
                    shallow.add(c)
                else:
                    within.add(c)
                continue
            within.add(c)
            for p in parents:
                if p not in level:
                    level[p] = d + 1
                    queue.append(p)
        return shallow - within, within

    def shallow_by_rev_list(
        self, wants: Iterable[bytes], since: int | None, excluded_tips: Iterable[bytes]
    ) -> tuple[set[bytes], set[bytes]]:
        """``deepen-since`` / ``deepen-not``: keep commits newer than ``since`` and not
        reachable from ``excluded_tips``; those with a parent left out become shallow."""
        excluded = self.ancestors(excluded_tips)
        reachable = self.ancestors(wants, stop=excluded)
        included = {c for c in reachable if since is None or self.commit(c).time >= since}
        shallow = {c for c in included if any(p not in included for p in self.commit(c).parents)}
        return shallow, included - shallow

    def reaches_any(self, start: bytes, targets: set[bytes], cutoff: int) -> bool:
        """Does ``start`` have an ancestor (or itself) in ``targets``, looking no older than cutoff?"""
        seen: set[bytes] = set()
        stack = [start]
        while stack:
            c = stack.pop()
            if c in targets:
                return True
            if c in seen:
                continue
            seen.add(c)
            info = self.commit(c)
            if info.time < cutoff:
                continue
            stack.extend(info.parents)
        return False

    def tree_closure(self, roots: Iterable[bytes], into: set[bytes]) -> None:
        """Add every tree and blob reachable from ``roots`` (trees) to ``into``."""
        stack = [r for r in roots if r not in into]
        into.update(stack)
        while stack:
            for child, is_tree in self.tree(stack.pop()):
                if child not in into:
                    into.add(child)
                    if is_tree:
                        stack.append(child)

    def objects_to_send(
        self,
        wants: Iterable[bytes],
        haves: Iterable[bytes],
        *,
        shallow: Set[bytes] = frozenset(),
        client_shallow: Set[bytes] = frozenset(),
        object_filter: ObjectFilter | None = None,
        sizes: Callable[[bytes], int] | None = None,
    ) -> tuple[list[bytes], set[bytes]]:
        """Objects reachable from ``wants`` and not from ``haves``, in pack order, and the
        objects the client is known to hold (bases a thin pack may delta against).

        As in Git, "not from haves" is judged by the trees of the boundary commits: an object
        only reachable from deeper history the client has may be sent again, never omitted.
        ``shallow`` are the commits whose parents are not sent (the new shallow boundary);
        ``client_shallow`` those whose parents the client lacks. ``object_filter`` prunes trees
        and blobs the walk reaches, never the objects named in ``wants``.
        """
        order: list[bytes] = []
        tags: list[bytes] = []
        want_commits: list[bytes] = []
        named: list[bytes] = []  # non-commit objects wanted by name: sent whatever the filter
        for oid in dict.fromkeys(wants):
            type_num = self.objects.type_of(oid)
            while type_num == OBJ_TAG:
                tags.append(oid)
                _, raw = self.objects.get(oid)
                oid, type_num = parse_tag_target(raw)
            if type_num == OBJ_COMMIT:
                want_commits.append(oid)
            else:
                named.append(oid)

        have_commits: list[bytes] = []
        have_others: set[bytes] = set()  # tags, trees and blobs the client says it has
        for oid in haves:
            if not self.objects.has(oid):
                continue
            try:
                while self.objects.type_of(oid) == OBJ_TAG:
                    have_others.add(oid)
                    oid = parse_tag_target(self.objects.get(oid)[1])[0]
                type_num = self.objects.type_of(oid)
            except (CorruptObject, KeyError):
                continue
            if type_num == OBJ_COMMIT:
                have_commits.append(oid)
            else:
                have_others.add(oid)
        uninteresting = self.ancestors(have_commits, cut=client_shallow) if have_commits else set()

        commits = self.ancestors(want_commits, stop=uninteresting, cut=shallow)
        ordered = sorted(commits, key=lambda c: -self.commit(c).time)
        boundary: set[bytes] = set()
        for c in ordered:
            if c in shallow:
                continue
            for p in self.commit(c).parents:
                if p in uninteresting:
                    boundary.add(p)
        known: set[bytes] = set(have_others)
        self.tree_closure(
            [self.commit(b).tree for b in boundary]
            + [o for o in have_others if self.objects.type_of(o) == OBJ_TREE],
            known,
        )
        known.update(uninteresting)

        keep = object_filter
        sent: set[bytes] = set()
        if keep is None or keep.only_type in (None, OBJ_COMMIT):
            sent.update(ordered)
            order.extend(ordered)
        for t in tags:
            if t not in sent and t not in known:
                sent.add(t)
                order.append(t)
        trees_and_blobs: list[bytes] = []
        for oid in named:
            if oid not in sent and oid not in known:
                sent.add(oid)
                trees_and_blobs.append(oid)
        roots = [self.commit(c).tree for c in ordered]
        roots += [oid for oid in named if self.objects.type_of(oid) == OBJ_TREE]
        if keep is None:
            self._walk_all(roots, sent, known, trees_and_blobs)
        else:
            self._walk_filtered(roots, sent, known, trees_and_blobs, keep, sizes)
        order.extend(trees_and_blobs)
        return order, known

    def _walk_all(
        self, roots: list[bytes], sent: set[bytes], known: Set[bytes], out: list[bytes]
    ) -> None:
        walked: set[bytes] = set()
        for root in roots:
            # Trees wanted by name are already in ``sent`` but still need their contents.
            if root in known or root in walked:
                continue
            walked.add(root)
            if root not in sent:
                sent.add(root)
                out.append(root)
            stack = [root]
            while stack:
                for child, is_tree in self.tree(stack.pop()):
                    if child in sent or child in known:
                        continue
                    sent.add(child)
                    out.append(child)
                    if is_tree:
                        stack.append(child)

    def _walk_filtered(
        self,
        roots: list[bytes],
        sent: set[bytes],
        known: Set[bytes],
        out: list[bytes],
        keep: ObjectFilter,
        sizes: Callable[[bytes], int] | None,
    ) -> None:
        """The walk with a partial-clone filter; a tree first met deep and later shallower is
        walked again, since the filter's verdict depends on depth."""
        best_depth: dict[bytes, int] = {}
        size_of = sizes if sizes is not None else (lambda oid: len(self.objects.get(oid)[1]))
        for root in roots:
            stack = [(root, 0)]
            while stack:
                tree, depth = stack.pop()
                if tree in known or best_depth.get(tree, depth + 1) <= depth:
                    continue
                best_depth[tree] = depth
                if tree not in sent and keep.include(OBJ_TREE, depth, 0):
                    sent.add(tree)
                    out.append(tree)
                if not keep.descend(depth):
                    continue
                for child, is_tree in self.tree(tree):
                    if is_tree:
                        stack.append((child, depth + 1))
                    elif child not in sent and child not in known:
                        size = size_of(child) if keep.needs_sizes else 0
                        if keep.include(OBJ_BLOB, depth + 1, size):
                            sent.add(child)
                            out.append(child)
