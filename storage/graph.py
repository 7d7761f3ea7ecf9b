"""The object graph over a store: parsed commits and trees, and what a fetch must send.

Parsing is cached (commits and trees never change under their id), so repeated clones and fetches
walk dictionaries instead of inflating and parsing objects again.
"""

from __future__ import annotations

import threading
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Sequence, Set
from dataclasses import dataclass
from typing import Protocol

from dulwich.objects import parse_tree

from storage.errors import CorruptObject
from storage.filters import ObjectFilter
from storage.packs import OBJ_BLOB, OBJ_COMMIT, OBJ_TAG, OBJ_TREE
from storage.treeparse import CanonicalEntries, TreeEntries, canonical_entries, tree_entries

GITLINK_MODE = 0o160000
TREE_MODE = 0o040000
#: The type a tree entry's object must have, by the entry's (canonical) mode; gitlinks are absent.
_CHILD_TYPE = {0o100644: OBJ_BLOB, 0o100755: OBJ_BLOB, 0o120000: OBJ_BLOB, TREE_MODE: OBJ_TREE}
_GITLINK_TEXT = b"160000"


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


def object_links(type_num: int, content: bytes) -> list[bytes]:
    """The object ids an object points at (a commit's tree and parents, a tree's entries without
    submodules, a tag's target)."""
    if type_num == OBJ_COMMIT:
        info = parse_commit(content)
        return [info.tree, *info.parents]
    if type_num == OBJ_TREE:
        return [sha for _n, mode, sha in parse_tree(content, 20) if (mode & 0o170000) != GITLINK_MODE]
    if type_num == OBJ_TAG:
        return [parse_tag_target(content)[0]]
    return []


class LinkCollector:
    """Collects, while a pack is indexed, what each received object points at.

    Connectivity is then checked without inflating anything twice, and the parsed commits and
    trees prime the :class:`ObjectGraph` once the pack is accepted. Links are kept as the graph's
    object numbers, the form the graph caches them in.
    """

    def __init__(self, graph: ObjectGraph) -> None:
        self.graph = graph
        self.kinds: dict[int, int] = {}  # type of each received object
        self.links: dict[int, tuple[Sequence[int], bytes]] = {}  # children and their expected types
        self.commits: dict[bytes, CommitInfo] = {}
        self.trees: dict[int, tuple[array, list[int]]] = {}
        #: Set by :meth:`first_missing`: the walk reached every received object and no other.
        self.covers_all = False
        self._numbers: dict[bytes, int] = {}  # binary id -> object number, for this push's trees
        self._links_checked = False  # _link_check holds _check_links' answer (for any tips)
        self._link_check: tuple[bool, set[int]] | None = None

    def __call__(
        self, oid: bytes, type_num: int, content: bytes, entries: CanonicalEntries | None = None
    ) -> None:
        """Record one received object; a tree's ``entries`` may come already parsed
        (:func:`~storage.treeparse.canonical_entries`, shared with fsck)."""
        g = self.graph
        i = g.intern(oid)
        self.kinds[i] = type_num
        self._links_checked = False
        if type_num == OBJ_COMMIT:
            info = g.canonical_commit(parse_commit(content))
            self.commits[g.oid(i)] = info
            parents = [g.intern(p) for p in info.parents]
            self.links[i] = ((g.intern(info.tree), *parents),
                             bytes([OBJ_TREE] + [OBJ_COMMIT] * len(parents)))
        elif type_num == OBJ_TREE:
            if entries is None:
                entries = canonical_entries(content)
            if entries is None or _GITLINK_TEXT in entries[1]:
                parsed = tree_entries(content)
                if parsed is None:
                    g.parse_tree_ids(content)  # raises, saying why
                    raise CorruptObject("malformed tree")
                kids, dirs, expect = g.tree_ids(parsed)
            else:
                kids, dirs, expect = self._canonical_tree_ids(entries)
            self.trees[i] = (kids, dirs)
            self.links[i] = (kids, expect)
        elif type_num == OBJ_TAG:
            target, target_type = parse_tag_target(content)
            self.links[i] = ((g.intern(target),), bytes([target_type]))

    def _canonical_tree_ids(self, entries: CanonicalEntries) -> tuple[array, list[int], bytes]:
        """:meth:`ObjectGraph.tree_ids` of a canonical tree without gitlinks. Its ids are binary;
        each distinct one is turned into hex and numbered once per push (successive versions of a
        tree repeat most of their entries)."""
        _names, modes, ids, dirs = entries
        # Every mode is canonical and none is a gitlink: directories are trees, the rest blobs.
        expect = bytearray([OBJ_BLOB]) * len(modes)
        for i in dirs:
            expect[i] = OBJ_TREE
        numbers = list(map(self._numbers.get, ids))
        if None in numbers:
            known, intern = self._numbers, self.graph.intern
            j = numbers.index(None)
            while True:
                raw = ids[j]
                n = known.get(raw)
                if n is None:
                    n = known[raw] = intern(raw.hex().encode())
                numbers[j] = n
                try:
                    j = numbers.index(None, j + 1)
                except ValueError:
                    break
        return array("I", numbers), dirs, bytes(expect)

    def first_missing(self, tips: Iterable[bytes], stored: ObjectReader) -> bytes | None:
        """The first object reachable from ``tips`` that is neither received nor stored, or that
        is not of the type its referrer says (a commit whose tree is a blob): git's "missing
        necessary objects".

        Stored objects are complete by induction (every earlier write was checked), so the walk
        never enters them.
        """
        tips = list(tips)
        covers_all = self._all_links_present(tips, stored)
        if covers_all is not None:
            self.covers_all = covers_all
            return None
        return self._walk(tips, stored)

    def _walk(self, tips: list[bytes], stored: ObjectReader) -> bytes | None:
        """:meth:`first_missing` by walking from the tips, link by link."""
        g = self.graph
        self.covers_all = False
        seen: set[int] = set()
        outside = False  # did the walk meet an object that was not received (or not entered)?
        stack: list[tuple[int, int]] = [(g.intern(t), 0) for t in tips]
        while stack:
            i, expected = stack.pop()
            if i in seen:
                continue
            seen.add(i)
            kind = self.kinds.get(i)
            if kind is None:
                outside = True
                oid = g.oid(i)
                if not stored.has(oid) or (expected and stored.type_of(oid) != expected):
                    return oid
                continue
            if expected and kind != expected:
                return g.oid(i)
            links = self.links.get(i)
            if links is not None:
                if stored.has(g.oid(i)):
                    outside = True
                else:
                    stack.extend(zip(links[0], links[1], strict=True))
        # Every received object reached, and nothing else: the received objects are exactly
        # those reachable from ``tips`` (what lets a full clone reuse the pack as it is).
        self.covers_all = not outside and len(seen) == len(self.kinds)
        return None

    def _all_links_present(self, tips: list[bytes], stored: ObjectReader) -> bool | None:
        """A bulk proof that nothing reachable from ``tips`` is missing: every tip and every link
        of every received object is a received or stored object of the expected type. This is
        more than :meth:`first_missing` asks (links of received objects the tips do not reach
        count too), so when it fails the walk decides; when it holds, the answer is the walk's.

        Returns None when the proof fails, else the walk's :attr:`covers_all`: no received object
        is stored or links outside the push, and every received object is reachable from a tip.
        The last holds when every received object other than a tip is linked from a received
        object, because links cannot form a cycle (an object's id is the hash of its links):
        following links backwards from any received object ends at a tip.
        """
        g = self.graph
        kinds = self.kinds
        outside = False
        tip_numbers = set()
        for t in tips:
            n = g.intern(t)
            tip_numbers.add(n)
            if n not in kinds:
                if not stored.has(t):
                    return None
                outside = True
        if not self._links_checked:  # the same for every set of tips: done once per push
            self._link_check = self._check_links(stored)
            self._links_checked = True
        if self._link_check is None:
            return None
        links_outside, linked = self._link_check
        if outside or links_outside:
            return False
        return all(n in linked or n in tip_numbers for n in kinds)

    def _check_links(self, stored: ObjectReader) -> tuple[bool, set[int]] | None:
        """Is every link of every received object a received or stored object of the type the
        link expects? None if not; else whether any received object links outside the push or
        is stored itself (the walk does not enter those), and every object something links to."""
        g = self.graph
        kind_of = bytearray(g.size())
        for n, k in self.kinds.items():
            kind_of[n] = k
        outside = False
        linked: set[int] = set()
        stored_types: dict[int, int] = {}  # links to stored objects: their types
        for kids, expect in self.links.values():
            linked.update(kids)
            got = bytes(map(kind_of.__getitem__, kids))
            if got == expect:
                continue
            for j, want in enumerate(expect):
                if got[j] == want:
                    continue
                if got[j]:  # received, but not of the type its referrer says
                    return None
                kid = kids[j]
                kind = stored_types.get(kid)
                if kind is None:
                    oid = g.oid(kid)
                    if not stored.has(oid):
                        return None
                    kind = stored_types[kid] = stored.type_of(oid)
                if kind != want:
                    return None
                outside = True
        outside = outside or any(stored.has(g.oid(n)) for n in self.links)  # as the walk: not entered
        return outside, linked


class ObjectGraph:
    """Reachability over one object reader, with parse caches shared by all requests.

    Objects the graph has seen get small integer numbers; a tree's children are cached as an
    ``array`` of those numbers and whether a number is a tree as one byte, so the cache of a
    repository's trees costs a few bytes per entry instead of a Python object per entry.
    """

    def __init__(self, objects: ObjectReader) -> None:
        self.objects = objects
        self._commits: dict[bytes, CommitInfo] = {}
        self._numbers: dict[bytes, int] = {}
        self._oids: list[bytes] = []
        self._is_tree = bytearray()
        self._trees: dict[int, array] = {}
        self._lock = threading.Lock()

    # -- object numbers ----------------------------------------------------------------------

    def intern(self, oid: bytes) -> int:
        i = self._numbers.get(oid)
        if i is None:
            with self._lock:
                i = self._numbers.get(oid)
                if i is None:
                    i = len(self._oids)
                    self._oids.append(oid)
                    self._is_tree.append(0)
                    self._numbers[oid] = i
        return i

    def oid(self, number: int) -> bytes:
        return self._oids[number]

    def size(self) -> int:
        """How many objects have a number (numbers run from 0 to this, exclusive)."""
        return len(self._oids)

    def canonical_commit(self, info: CommitInfo) -> CommitInfo:
        """The same commit with its ids replaced by the graph's shared ``bytes`` objects."""
        return CommitInfo(
            self._oids[self.intern(info.tree)],
            tuple(self._oids[self.intern(p)] for p in info.parents),
            info.time,
        )

    def parse_tree_ids(self, raw: bytes) -> tuple[array, list[int]]:
        """A tree's children as object numbers (submodule links skipped) and the positions of
        those that are trees. Nothing is recorded about the children: a received tree is not
        trusted until its push is accepted (see :meth:`adopt`)."""
        entries = tree_entries(raw)
        if entries is None:
            try:
                parse_tree(raw, 20)
            except Exception as e:
                raise CorruptObject(f"malformed tree: {e}") from None
            raise CorruptObject("malformed tree")
        kids, dirs, _expect = self.tree_ids(entries)
        return kids, dirs

    def tree_ids(self, entries: TreeEntries) -> tuple[array, list[int], bytes]:
        """:meth:`parse_tree_ids` of a tree already parsed, plus the type each child must have
        (one byte per child: ``OBJ_TREE`` or ``OBJ_BLOB``)."""
        _names, modes, shas = entries
        # Bulk operations (map, count, index) rather than a per-entry loop: pushes parse every
        # new tree and a large tree has hundreds of entries.
        try:
            expect = bytes(map(_CHILD_TYPE.__getitem__, modes))
        except KeyError:  # a gitlink, or a mode that is not canonical
            kinds = [mode & 0o170000 for mode in modes]
            if GITLINK_MODE in kinds:
                shas = tuple(s for s, k in zip(shas, kinds, strict=True) if k != GITLINK_MODE)
                kinds = [k for k in kinds if k != GITLINK_MODE]
            expect = bytes(OBJ_TREE if k == TREE_MODE else OBJ_BLOB for k in kinds)
        numbers = list(map(self._numbers.get, shas))
        if None in numbers:  # objects met for the first time: number them, one index() per object
            intern = self.intern
            j = numbers.index(None)
            while True:
                numbers[j] = intern(shas[j])
                try:
                    j = numbers.index(None, j + 1)
                except ValueError:
                    break
        dirs: list[int] = []
        i = -1
        for _ in range(expect.count(OBJ_TREE)):
            i = expect.index(OBJ_TREE, i + 1)
            dirs.append(i)
        return array("I", numbers), dirs, expect

    def _mark_trees(self, kids: array, dirs: list[int]) -> None:
        is_tree = self._is_tree
        for i in dirs:
            is_tree[kids[i]] = 1

    # -- parsed objects ----------------------------------------------------------------------

    def commit(self, oid: bytes) -> CommitInfo:
        info = self._commits.get(oid)
        if info is None:
            type_num, raw = self.objects.get(oid)
            if type_num != OBJ_COMMIT:
                raise CorruptObject(f"{oid.decode()} is not a commit")
            info = self._commits[oid] = self.canonical_commit(parse_commit(raw))
        return info

    def _tree_ids(self, number: int) -> array:
        kids = self._trees.get(number)
        if kids is None:
            type_num, raw = self.objects.get(self._oids[number])
            if type_num != OBJ_TREE:
                raise CorruptObject(f"{self._oids[number].decode()} is not a tree")
            kids, dirs = self.parse_tree_ids(raw)
            self._is_tree[number] = 1
            self._mark_trees(kids, dirs)
            self._trees[number] = kids
        return kids

    def tree(self, oid: bytes) -> tuple[tuple[bytes, bool], ...]:
        """Children of a tree as (oid, is_tree); submodule entries (gitlinks) are skipped."""
        kids = self._tree_ids(self.intern(oid))
        return tuple((self._oids[k], bool(self._is_tree[k])) for k in kids)

    def adopt(self, collected: LinkCollector) -> None:
        """Keep what a push already parsed, so the next fetch does not parse it again."""
        self._commits.update(collected.commits)
        for number, (kids, dirs) in collected.trees.items():
            self._is_tree[number] = 1
            self._mark_trees(kids, dirs)
            self._trees[number] = kids

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

    def oldest_first(self, tip: bytes, within: Set[bytes]) -> list[bytes]:
        """The commits of ``within`` reachable from ``tip``, parents before children (a
        topological order that does not trust commit clocks)."""
        order: list[bytes] = []
        seen: set[bytes] = set()
        stack: list[tuple[bytes, bool]] = [(tip, False)]
        while stack:
            oid, expanded = stack.pop()
            if expanded:
                order.append(oid)
                continue
            if oid in seen or oid not in within:
                continue
            seen.add(oid)
            stack.append((oid, True))
            stack.extend((p, False) for p in reversed(self.commit(oid).parents) if p not in seen)
        return order

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

    def _closure_ids(self, roots: Iterable[int], into: set[int]) -> None:
        """Add every tree and blob reachable from the trees ``roots`` to ``into``."""
        is_tree = self._is_tree
        stack = [r for r in roots if r not in into]
        into.update(stack)
        while stack:
            for child in self._tree_ids(stack.pop()):
                if child not in into:
                    into.add(child)
                    if is_tree[child]:
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
        known_ids: set[int] = {self.intern(o) for o in have_others}
        self._closure_ids(
            [self.intern(self.commit(b).tree) for b in boundary]
            + [self.intern(o) for o in have_others if self.objects.type_of(o) == OBJ_TREE],
            known_ids,
        )

        keep = object_filter
        sent: set[bytes] = set()
        if keep is None or keep.only_type in (None, OBJ_COMMIT):
            sent.update(ordered)
            order.extend(ordered)
        for t in tags:
            if t not in sent and self.intern(t) not in known_ids:
                sent.add(t)
                order.append(t)
        sent_ids: set[int] = set()
        out: list[int] = []
        named_trees: list[int] = []
        for oid in named:
            i = self.intern(oid)
            if i not in sent_ids and i not in known_ids:
                sent_ids.add(i)
                out.append(i)
                if self.objects.type_of(oid) == OBJ_TREE:
                    named_trees.append(i)
        roots = [self.intern(self.commit(c).tree) for c in ordered] + named_trees
        if keep is None:
            self._walk_all(roots, sent_ids, known_ids, out)
        else:
            self._walk_filtered(roots, sent_ids, known_ids, out, keep, sizes)
        oids = self._oids
        order.extend(oids[i] for i in out)
        known = {oids[i] for i in known_ids}
        known.update(uninteresting)
        return order, known

    def _walk_all(self, roots: list[int], sent: set[int], known: set[int], out: list[int]) -> None:
        is_tree = self._is_tree
        walked: set[int] = set()
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
                for child in self._tree_ids(stack.pop()):
                    if child in sent or child in known:
                        continue
                    sent.add(child)
                    out.append(child)
                    if is_tree[child]:
                        stack.append(child)

    def _walk_filtered(
        self,
        roots: list[int],
        sent: set[int],
        known: set[int],
        out: list[int],
        keep: ObjectFilter,
        sizes: Callable[[bytes], int] | None,
    ) -> None:
        """The walk with a partial-clone filter; a tree first met deep and later shallower is
        walked again, since the filter's verdict depends on depth."""
        is_tree = self._is_tree
        best_depth: dict[int, int] = {}
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
                for child in self._tree_ids(tree):
                    if is_tree[child]:
                        stack.append((child, depth + 1))
                    elif child not in sent and child not in known:
                        size = size_of(self._oids[child]) if keep.needs_sizes else 0
                        if keep.include(OBJ_BLOB, depth + 1, size):
                            sent.add(child)
                            out.append(child)
