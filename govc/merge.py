"""Three-way merges of commits, trees and file contents, with the results Git's ``ort`` strategy gives.

A merge made by govc must be the merge a Git user would have made: when it is clean, the merged
tree has the same object id ``git merge-tree --write-tree`` prints, so a commit built on it is the
commit a developer would have pushed. That is why the line-level merge follows Git's own rules
rather than any "reasonable" diff3:

- the two diffs against the base use the *histogram* algorithm (merge-ort always uses it, whatever
  ``diff.algorithm`` says), with Git's sliding of ambiguous change groups afterwards;
- changes from the two sides that touch or overlap (an edit of line 3 against an edit of line 4
  included) are a conflict, unless both sides end up with the same text there;
- a conflict is then narrowed to the lines where the two sides really differ ("zealous" merge), and
  conflicts at most three lines apart are shown as one;
- any side with a NUL byte in its first 8000 bytes is binary: no line merge, ours is kept.

At tree level a path is resolved without reading it when two of (base, ours, theirs) agree, so whole
untouched directories cost one comparison. Objects are written only when the merge is clean.

What differs from Git: no rename or directory-rename detection; no ``.gitattributes`` (merge
drivers, ``binary``, eol); submodule changes on both sides always conflict (Git may fast-forward
the submodule when it has its commits); for criss-cross histories the merge bases are merged into
a virtual base only when that inner merge is clean, else the newest base is used; and where every
line two regions share occurs more than 64 times (the histogram gives up and Git falls back to
its Myers, with its own filtering of frequent lines), our plain Myers may align changes
differently, which can change conflict hunks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from dulwich.objects import parse_tree

from storage.errors import CorruptObject
from storage.graph import ObjectGraph
from storage.packs import OBJ_BLOB, OBJ_TREE, object_id

__all__ = [
    "Conflict",
    "MergeResult",
    "UnrelatedHistories",
    "is_binary",
    "merge_base",
    "merge_bases",
    "merge_blobs",
    "merge_commits",
    "merge_trees",
]

MODE_TREE = 0o040000
MODE_FILE = 0o100644
MODE_EXECUTABLE = 0o100755
MODE_SYMLINK = 0o120000
MODE_GITLINK = 0o160000
_TYPE_MASK = 0o170000

#: Git looks for a NUL in this many leading bytes to call a file binary (``buffer_is_binary``).
BINARY_PROBE = 8000
#: A line occurring more often than this in a region is never a histogram anchor (Git's limit).
_MAX_CHAIN = 64
#: Conflicts separated by at most this many lines are shown as one (Git's zealous merge).
_JOIN_DISTANCE = 3
#: Criss-cross histories nest merges of merge bases; beyond this depth the newest base is used.
_MAX_VIRTUAL_DEPTH = 8

EMPTY_TREE = object_id(OBJ_TREE, b"")


class MergeStore(Protocol):
    """What a merge needs from a store (MemoryObjectStore has it): read objects, and write the
    merged blobs and trees."""

    def get(self, oid: bytes) -> tuple[int, bytes]: ...

    def add_object(self, type_num: int, data: bytes) -> bytes: ...


@dataclass(frozen=True)
class Conflict:
    """One path the merge could not resolve.

    ``kind`` is one of ``content``, ``add/add``, ``modify/delete`` (ours modified, theirs deleted),
    ``delete/modify`` (ours deleted, theirs modified), ``file/directory`` and ``mode`` (executable
    bit, or a type clash such as file against symlink). The three versions are blob contents (None
    where the side has no file there); ``merged`` is the text with conflict markers for ``content``
    and ``add/add`` conflicts of text files, None otherwise.
    """

    path: str
    kind: str
    base: bytes | None
    ours: bytes | None
    theirs: bytes | None
    merged: bytes | None = None


@dataclass(frozen=True)
class MergeResult:
    """A merge's outcome: the merged tree (written to the store) when clean, else the conflicts.

    ``fast_forward`` means ours was an ancestor of theirs and ``tree`` is simply theirs' tree.
    """

    tree: bytes | None
    conflicts: tuple[Conflict, ...] = ()
    fast_forward: bool = False

    @property
    def clean(self) -> bool:
        return not self.conflicts


class UnrelatedHistories(ValueError):
    """The two commits share no ancestor; Git refuses such a merge unless told otherwise."""


# ============================================================================================
# Line diff: histogram, with Myers where histogram gives up, then Git's sliding of groups


def _split_lines(data: bytes) -> list[bytes]:
    """Lines with their ``\\n`` kept (only ``\\n`` ends a line, as in xdiff)."""
    parts = data.split(b"\n")
    lines = [p + b"\n" for p in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def _intern(texts: Iterable[list[bytes]]) -> list[list[int]]:
    """Lines as small integers, equal across all the texts iff the lines are equal."""
    ids: dict[bytes, int] = {}
    return [[ids.setdefault(line, len(ids)) for line in text] for text in texts]


def _diff(a: Sequence[int], b: Sequence[int]) -> tuple[bytearray, bytearray]:
    """Which lines of ``a`` and ``b`` are changed (1) and which are common (0).

    Unlike Myers in xdiff, the histogram looks at the whole files, common prefix and suffix
    included: where it anchors depends on that, and so does the merge.
    """
    ca, cb = bytearray(len(a)), bytearray(len(b))
    _histogram(a, b, ca, cb, 0, len(a), 0, len(b))
    _compact(a, ca, cb)
    _compact(b, cb, ca)
    return ca, cb


def _mark(flags: bytearray, start: int, end: int) -> None:
    flags[start:end] = b"\x01" * (end - start)


_FALLBACK = (-1, -1, -1, -1)


def _histogram(
    a: Sequence[int], b: Sequence[int], ca: bytearray, cb: bytearray, a0: int, a1: int, b0: int, b1: int
) -> None:
    """Histogram diff of ``a[a0:a1]`` against ``b[b0:b1]``: anchor on the rarest common line (and the
    longest run of common lines around it), then diff the regions before and after the anchor."""
    regions = [(a0, a1, b0, b1)]
    while regions:
        a0, a1, b0, b1 = regions.pop()
        if a0 == a1 or b0 == b1:
            _mark(ca, a0, a1)
            _mark(cb, b0, b1)
            continue
        anchor = _find_anchor(a, b, a0, a1, b0, b1)
        if anchor is None:
            _mark(ca, a0, a1)
            _mark(cb, b0, b1)
        elif anchor is _FALLBACK:
            _myers(a, b, ca, cb, a0, a1, b0, b1)
        else:
            as_, ae, bs, be = anchor
            regions.append((ae, a1, be, b1))
            regions.append((a0, as_, b0, bs))


def _find_anchor(
    a: Sequence[int], b: Sequence[int], a0: int, a1: int, b0: int, b1: int
) -> tuple[int, int, int, int] | None:
    """The common run to split on, as (a start, a end, b start, b end), ends exclusive.

    None when the regions share no line at all; ``_FALLBACK`` when every shared line is too
    frequent to anchor on. Candidates are taken in ``b``'s order; one replaces the best so far
    when it is longer or made of rarer lines, which is the choice Git's histogram makes.
    """
    count: dict[int, int] = {}
    first: dict[int, int] = {}
    following: dict[int, int] = {}  # position in a -> next position of the same line in a
    for p in range(a1 - 1, a0 - 1, -1):
        line = a[p]
        nxt = first.get(line)
        if nxt is not None:
            following[p] = nxt
            count[line] += 1
        else:
            count[line] = 1
        first[line] = p

    best_count = _MAX_CHAIN + 1
    best_len = 1  # an unset anchor counts as length one, so only rarity can replace it
    best: tuple[int, int, int, int] | None = None
    shared = False
    bp = b0
    while bp < b1:
        b_next = bp + 1
        line = b[bp]
        occurrences = count.get(line)
        if occurrences is None:
            bp = b_next
            continue
        shared = True
        if occurrences > best_count:
            bp = b_next
            continue
        ap: int | None = first[line]
        while ap is not None:
            as_, bs, ae, be = ap, bp, ap + 1, bp + 1
            rarity = occurrences
            while as_ > a0 and bs > b0 and a[as_ - 1] == b[bs - 1]:
                as_ -= 1
                bs -= 1
                if rarity > 1:
                    rarity = min(rarity, count[a[as_]])
            while ae < a1 and be < b1 and a[ae] == b[be]:
                if rarity > 1:
                    rarity = min(rarity, count[a[ae]])
                ae += 1
                be += 1
            b_next = max(b_next, be)
            if best_len < ae - as_ or rarity < best_count:
                best = (as_, ae, bs, be)
                best_len = ae - as_
                best_count = rarity
            # The next occurrence of the line in a that this run does not already cover.
            ap = following.get(ap)
            while ap is not None and ap < ae:
                ap = following.get(ap)
        bp = b_next
    if not shared:
        return None
    if best is None or best_count > _MAX_CHAIN:
        return _FALLBACK
    return best


def _myers(
    a: Sequence[int], b: Sequence[int], ca: bytearray, cb: bytearray, a0: int, a1: int, b0: int, b1: int
) -> None:
    """A shortest edit script by Myers' linear-space divide and conquer (for the regions where
    the histogram finds only very frequent lines, such as a file of blank lines)."""
    regions = [(a0, a1, b0, b1)]
    while regions:
        a0, a1, b0, b1 = regions.pop()
        while a0 < a1 and b0 < b1 and a[a0] == b[b0]:
            a0 += 1
            b0 += 1
        while a1 > a0 and b1 > b0 and a[a1 - 1] == b[b1 - 1]:
            a1 -= 1
            b1 -= 1
        if a0 == a1 or b0 == b1:
            _mark(ca, a0, a1)
            _mark(cb, b0, b1)
            continue
        x, y, u, v = _middle_snake(a, b, a0, a1, b0, b1)
        regions.append((u, a1, v, b1))
        regions.append((a0, x, b0, y))


def _middle_snake(
    a: Sequence[int], b: Sequence[int], a0: int, a1: int, b0: int, b1: int
) -> tuple[int, int, int, int]:
    """The middle snake of an optimal path through ``a[a0:a1]`` x ``b[b0:b1]`` (both non-empty and
    differing at both ends), as absolute (x, y) start and (u, v) end."""
    n, m = a1 - a0, b1 - b0
    delta = n - m
    odd = delta & 1
    off = n + m + 1
    forward = [0] * (2 * off + 2)
    backward = [0] * (2 * off + 2)
    for d in range((n + m + 1) // 2 + 1):
        for k in range(-d, d + 1, 2):
            if k == -d or (k != d and forward[off + k - 1] < forward[off + k + 1]):
                x = forward[off + k + 1]
            else:
                x = forward[off + k - 1] + 1
            y = x - k
            sx, sy = x, y
            while x < n and y < m and a[a0 + x] == b[b0 + y]:
                x += 1
                y += 1
            forward[off + k] = x
            # The reverse path on the same diagonal has run ``d - 1`` steps.
            if odd and -(d - 1) <= delta - k <= d - 1 and x + backward[off + delta - k] >= n:
                return a0 + sx, b0 + sy, a0 + x, b0 + y
        for k in range(-d, d + 1, 2):
            if k == -d or (k != d and backward[off + k - 1] < backward[off + k + 1]):
                x = backward[off + k + 1]
            else:
                x = backward[off + k - 1] + 1
            y = x - k
            sx, sy = x, y
            while x < n and y < m and a[a1 - 1 - x] == b[b1 - 1 - y]:
                x += 1
                y += 1
            backward[off + k] = x
            if not odd and -d <= delta - k <= d and x + forward[off + delta - k] >= n:
                return a1 - x, b1 - y, a1 - sx, b1 - sy
    raise AssertionError("no middle snake")  # unreachable: a path of length n + m always exists


def _compact(lines: Sequence[int], changed: bytearray, other: bytearray) -> None:
    """Slide each group of changed lines as Git does after diffing (without the indent heuristic,
    which merges do not use): as far down as it goes, merging with groups it meets, then back up
    to line up with a change in the other file if it passed one.

    The unchanged lines of the two files pair up in order, so the k-th group (run of changed
    lines, possibly empty, between unchanged lines) of one file faces the k-th of the other.
    """
    n = len(lines)
    m = len(other)

    def run_end(flags: bytearray, start: int, size: int) -> int:
        while start < size and flags[start]:
            start += 1
        return start

    def run_start(flags: bytearray, end: int) -> int:
        while end > 0 and flags[end - 1]:
            end -= 1
        return end

    gs, ge = 0, run_end(changed, 0, n)
    os_, oe = 0, run_end(other, 0, m)
    while True:
        if ge != gs:
            while True:
                size = ge - gs
                matching_end = -1
                while gs > 0 and lines[gs - 1] == lines[ge - 1]:
                    gs -= 1
                    ge -= 1
                    changed[gs] = 1
                    changed[ge] = 0
                    gs = run_start(changed, gs)
                    oe = os_ - 1
                    os_ = run_start(other, oe)
                earliest_end = ge
                if oe > os_:
                    matching_end = ge
                while ge < n and lines[gs] == lines[ge]:
                    changed[gs] = 0
                    changed[ge] = 1
                    gs += 1
                    ge = run_end(changed, ge + 1, n)
                    os_ = oe + 1
                    oe = run_end(other, os_, m)
                    if oe > os_:
                        matching_end = ge
                if size == ge - gs:
                    break
            if ge != earliest_end and matching_end != -1:
                while oe == os_:
                    gs -= 1
                    ge -= 1
                    changed[gs] = 1
                    changed[ge] = 0
                    gs = run_start(changed, gs)
                    oe = os_ - 1
                    os_ = run_start(other, oe)
        if ge == n:
            break
        gs = ge + 1
        ge = run_end(changed, gs, n)
        os_ = oe + 1
        oe = run_end(other, os_, m)


def _hunks(ca: bytearray, cb: bytearray) -> list[tuple[int, int, int, int]]:
    """Maximal changes as (a start, a end, b start, b end), from the two change maps."""
    n, m = len(ca), len(cb)
    out: list[tuple[int, int, int, int]] = []
    i = j = 0
    while i < n or j < m:
        if i < n and j < m and not ca[i] and not cb[j]:
            i += 1
            j += 1
            continue
        si, sj = i, j
        while i < n and ca[i]:
            i += 1
        while j < m and cb[j]:
            j += 1
        if i == si and j == sj:
            raise AssertionError("change maps out of step")
        out.append((si, i, sj, j))
    return out


# ============================================================================================
# Three-way merge of line sequences


@dataclass(slots=True)
class _Region:
    """A stretch of the merge that is not simply ours: taken from one side (mode 1 ours, 2
    theirs), a conflict (0) or a conflict that refining showed to be no conflict (4).
    ``*0`` are base lines, ``*1`` ours, ``*2`` theirs: start and count."""

    mode: int
    i0: int
    c0: int
    i1: int
    c1: int
    i2: int
    c2: int


def _merge_regions(base: list[int], ours: list[int], theirs: list[int]) -> list[_Region]:
    """The merge's regions in order; everything between them is the same on all sides."""
    h1 = _hunks(*_diff(base, ours))
    h2 = _hunks(*_diff(base, theirs))
    regions: list[_Region] = []

    def append(mode: int, i0: int, c0: int, i1: int, c1: int, i2: int, c2: int) -> None:
        # A change that touches the previous region (in ours or theirs) joins it.
        if regions:
            last = regions[-1]
            if i1 <= last.i1 + last.c1 or i2 <= last.i2 + last.c2:
                if mode != last.mode:
                    last.mode = 0
                last.c0 = i0 + c0 - last.i0
                last.c1 = i1 + c1 - last.i1
                last.c2 = i2 + c2 - last.i2
                return
        regions.append(_Region(mode, i0, c0, i1, c1, i2, c2))

    i = j = 0
    while i < len(h1) and j < len(h2):
        xb0, xb1, xs0, xs1 = h1[i]
        yb0, yb1, ys0, ys1 = h2[j]
        if xb1 < yb0:  # ours alone (an unchanged base line separates it from theirs)
            append(1, xb0, xb1 - xb0, xs0, xs1 - xs0, ys0 - yb0 + xb0, xb1 - xb0)
            i += 1
            continue
        if yb1 < xb0:
            append(2, yb0, yb1 - yb0, xs0 - xb0 + yb0, yb1 - yb0, ys0, ys1 - ys0)
            j += 1
            continue
        same = xb0 == yb0 and xb1 == yb1 and ours[xs0:xs1] == theirs[ys0:ys1]
        if not same:
            start, end = min(xb0, yb0), max(xb1, yb1)
            i1, e1 = xs0 - (xb0 - start), xs1 + (end - xb1)
            i2, e2 = ys0 - (yb0 - start), ys1 + (end - yb1)
            append(0, start, end - start, i1, e1 - i1, i2, e2 - i2)
        if xb1 >= yb1:
            j += 1
        if yb1 >= xb1:
            i += 1
    for xb0, xb1, xs0, xs1 in h1[i:]:
        append(1, xb0, xb1 - xb0, xs0, xs1 - xs0, xb0 + len(theirs) - len(base), xb1 - xb0)
    for yb0, yb1, ys0, ys1 in h2[j:]:
        append(2, yb0, yb1 - yb0, yb0 + len(ours) - len(base), yb1 - yb0, ys0, ys1 - ys0)
    return _join_conflicts(_refine(regions, ours, theirs))


def _refine(regions: list[_Region], ours: list[int], theirs: list[int]) -> list[_Region]:
    """Narrow each conflict to where the two sides differ: lines both sides agree on are not in
    conflict, and a conflict whose sides turn out identical is resolved."""
    out: list[_Region] = []
    for r in regions:
        if r.mode != 0:
            out.append(r)
            continue
        hunks = _hunks(*_diff(ours[r.i1 : r.i1 + r.c1], theirs[r.i2 : r.i2 + r.c2]))
        if not hunks:
            r.mode = 4
            out.append(r)
            continue
        for p0, p1, q0, q1 in hunks:
            out.append(_Region(0, r.i0, r.c0, r.i1 + p0, p1 - p0, r.i2 + q0, q1 - q0))
    return out


def _join_conflicts(regions: list[_Region]) -> list[_Region]:
    """Show conflicts separated by only a few common lines as one, which reads better."""
    out: list[_Region] = []
    for r in regions:
        last = out[-1] if out else None
        if (
            last is not None
            and last.mode == 0
            and r.mode == 0
            and r.i1 - (last.i1 + last.c1) <= _JOIN_DISTANCE
        ):
            last.c1 = r.i1 + r.c1 - last.i1
            last.c2 = r.i2 + r.c2 - last.i2
            continue
        out.append(r)
    return out


def _with_newline(lines: list[bytes], eol: bytes) -> list[bytes]:
    if lines and not lines[-1].endswith(b"\n"):
        return [*lines[:-1], lines[-1] + eol]
    return lines


def _ends_in_crlf(lines: list[bytes], i: int) -> int:
    """Whether line ``i`` ends in CRLF: 1 yes, 0 no, -1 cannot tell (no such line, or a last
    line without end of line and nothing before it to judge by)."""
    if not lines:
        return -1
    if i == len(lines) - 1 and not lines[i].endswith(b"\n"):
        if i == 0:
            return -1
        i -= 1
    return 1 if lines[i].endswith(b"\r\n") else 0


def _conflict_eol(base: list[bytes], ours: list[bytes], theirs: list[bytes], r: _Region) -> bytes:
    """Markers take the file's line ending, as Git's do: CRLF when neither side's line just before
    the conflict (or first line) ends in a bare LF and the base's first line ends in CRLF."""
    before_ours = _ends_in_crlf(ours, r.i1 - 1 if r.i1 else 0)
    if before_ours == 0 or _ends_in_crlf(theirs, r.i2 - 1 if r.i2 else 0) == 0:
        return b"\n"
    return b"\r\n" if _ends_in_crlf(base, 0) == 1 else b"\n"


def is_binary(data: bytes) -> bool:
    """Git's test: a NUL byte among the first 8000 bytes."""
    return b"\x00" in data[:BINARY_PROBE]


def _marker(sign: bytes, label: str, eol: bytes) -> bytes:
    return sign * 7 + (b" " + label.encode() if label else b"") + eol


def merge_blobs(
    base: bytes | None, ours: bytes, theirs: bytes, labels: tuple[str, str] = ("ours", "theirs")
) -> tuple[bytes, bool]:
    """Merge two versions of a file against their base (None: the file is new on both sides).

    Returns (content, clean). Changes of one side only are taken; the same change on both sides is
    taken once; different changes to the same or adjacent lines are a conflict, written with Git's
    markers (``<<<<<<< ours`` ... ``=======`` ... ``>>>>>>> theirs``). Binary content that changed
    on both sides cannot be merged by lines: ours is returned, not clean, without markers.
    """
    if base is None:
        base = b""
    if ours == theirs or base == theirs:
        return ours, True
    if base == ours:
        return theirs, True
    if is_binary(base) or is_binary(ours) or is_binary(theirs):
        return ours, False
    base_lines, ours_lines, theirs_lines = _split_lines(base), _split_lines(ours), _split_lines(theirs)
    b, o, t = _intern([base_lines, ours_lines, theirs_lines])
    regions = _merge_regions(b, o, t)
    out: list[bytes] = []
    clean = True
    pos = 0
    for r in regions:
        out += ours_lines[pos : r.i1]
        if r.mode == 0:
            clean = False
            eol = _conflict_eol(base_lines, ours_lines, theirs_lines, r)
            out.append(_marker(b"<", labels[0], eol))
            out += _with_newline(ours_lines[r.i1 : r.i1 + r.c1], eol)
            out.append(b"=======" + eol)
            out += _with_newline(theirs_lines[r.i2 : r.i2 + r.c2], eol)
            out.append(_marker(b">", labels[1], eol))
        elif r.mode == 2:
            out += theirs_lines[r.i2 : r.i2 + r.c2]
        else:
            out += ours_lines[r.i1 : r.i1 + r.c1]
        pos = r.i1 + r.c1
    out += ours_lines[pos:]
    return b"".join(out), clean


# ============================================================================================
# Trees


@dataclass(frozen=True, slots=True)
class _Entry:
    mode: int
    oid: bytes

    @property
    def is_tree(self) -> bool:
        return self.mode == MODE_TREE


def _canonical_mode(mode: int) -> int:
    """The mode Git records for an entry (old trees may hold 100664 and the like)."""
    kind = mode & _TYPE_MASK
    if kind == 0o100000:
        return MODE_EXECUTABLE if mode & 0o100 else MODE_FILE
    if kind in (MODE_TREE, MODE_SYMLINK, MODE_GITLINK):
        return kind
    return mode


def _tree_key(item: tuple[bytes, _Entry]) -> bytes:
    """Git's tree order: a directory sorts as if its name ended with ``/``."""
    name, entry = item
    return name + b"/" if entry.is_tree else name


def _serialize_tree(entries: dict[bytes, _Entry]) -> bytes:
    return b"".join(
        b"%o %s\x00%s" % (e.mode, name, bytes.fromhex(e.oid.decode()))
        for name, e in sorted(entries.items(), key=_tree_key)
    )


class _TreeMerger:
    """One tree merge: reads inputs from the store, collects conflicts, and keeps the objects it
    makes aside so that nothing is written unless the whole merge is clean."""

    def __init__(self, objects: MergeStore, labels: tuple[str, str]) -> None:
        self.objects = objects
        self.labels = labels
        self.conflicts: list[Conflict] = []
        self.pending: dict[bytes, tuple[int, bytes]] = {}

    def write(self, type_num: int, data: bytes) -> bytes:
        oid = object_id(type_num, data)
        self.pending.setdefault(oid, (type_num, data))
        return oid

    def flush(self) -> None:
        for type_num, data in self.pending.values():
            self.objects.add_object(type_num, data)

    def read(self, oid: bytes, expected: int) -> bytes:
        pending = self.pending.get(oid)
        if pending is not None:
            return pending[1]
        type_num, data = self.objects.get(oid)
        if type_num != expected:
            raise CorruptObject(f"{oid.decode()} is not a {'tree' if expected == OBJ_TREE else 'blob'}")
        return data

    def entries(self, tree: bytes | None) -> dict[bytes, _Entry]:
        if tree is None:
            return {}
        raw = self.read(tree, OBJ_TREE)
        try:
            parsed = parse_tree(raw, 20)
        except Exception as e:
            raise CorruptObject(f"malformed tree {tree.decode()}: {e}") from None
        return {name: _Entry(_canonical_mode(mode), sha) for name, mode, sha in parsed}

    def content(self, entry: _Entry | None) -> bytes | None:
        """A file's bytes for a conflict report (a submodule has none here)."""
        if entry is None or entry.mode == MODE_GITLINK or entry.is_tree:
            return None
        return self.read(entry.oid, OBJ_BLOB)

    def conflict(
        self, path: bytes, kind: str, b: _Entry | None, o: _Entry | None, t: _Entry | None,
        merged: bytes | None = None,
    ) -> Conflict:
        return Conflict(
            path.decode("utf-8", "surrogateescape"), kind,
            self.content(b), self.content(o), self.content(t), merged,
        )

    # -- merging -----------------------------------------------------------------------------

    def merge_dir(
        self, prefix: bytes, base: bytes | None, ours: bytes | None, theirs: bytes | None
    ) -> bytes | None:
        """The merged directory's tree id, or None when nothing is left in it (Git keeps no empty
        directories). Conflicted paths keep a version in the tree, so their directory stays."""
        b, o, t = self.entries(base), self.entries(ours), self.entries(theirs)
        out: dict[bytes, _Entry] = {}
        for name in sorted(b.keys() | o.keys() | t.keys()):
            be, oe, te = b.get(name), o.get(name), t.get(name)
            if oe == te:
                result = oe
            elif be == oe:
                result = te
            elif be == te:
                result = oe
            else:
                result = self.merge_path(prefix + name, be, oe, te)
            if result is not None:
                out[name] = result
        if not out:
            return None
        return self.write(OBJ_TREE, _serialize_tree(out))

    def merge_path(self, path: bytes, b: _Entry | None, o: _Entry | None, t: _Entry | None) -> _Entry | None:
        """A name where all three sides differ. Its file and its directory (either may be absent
        on each side) are merged separately; both surviving is a file/directory conflict."""
        fb, fo, ft = (e if e is not None and not e.is_tree else None for e in (b, o, t))
        db, do, dt = (e if e is not None and e.is_tree else None for e in (b, o, t))
        tree: bytes | None = None
        if do is not None or dt is not None:
            if do == dt:
                tree = do.oid if do is not None else None
            elif db == do:
                tree = dt.oid if dt is not None else None
            elif db == dt:
                tree = do.oid if do is not None else None
            else:
                tree = self.merge_dir(
                    path + b"/", *(e.oid if e is not None else None for e in (db, do, dt))
                )
        file, conflict = self.merge_file(path, fb, fo, ft)
        if tree is not None and (file is not None or conflict is not None):
            self.conflicts.append(self.conflict(path, "file/directory", fb, fo, ft))
        elif conflict is not None:
            self.conflicts.append(conflict)
        if tree is not None:
            return _Entry(MODE_TREE, tree)
        return file

    def merge_file(
        self, path: bytes, b: _Entry | None, o: _Entry | None, t: _Entry | None
    ) -> tuple[_Entry | None, Conflict | None]:
        """Merge one non-directory entry: the entry to record and the conflict, if any."""
        if o == t:
            return o, None
        if b == o:
            return t, None
        if b == t:
            return o, None
        if o is None:
            return t, self.conflict(path, "delete/modify", b, o, t)
        if t is None:
            return o, self.conflict(path, "modify/delete", b, o, t)
        if o.mode & _TYPE_MASK != t.mode & _TYPE_MASK:
            return o, self.conflict(path, "mode", b, o, t)

        # Modes: a change on one side wins; two different changes cannot be reconciled.
        mode_clean = True
        if o.mode == t.mode or (b is not None and o.mode == b.mode):
            mode = t.mode
        elif b is not None and t.mode == b.mode:
            mode = o.mode
        else:
            mode, mode_clean = o.mode, False

        base_oid = b.oid if b is not None else None
        if o.oid == t.oid or o.oid == base_oid:
            return _Entry(mode, t.oid), (None if mode_clean else self.conflict(path, "mode", b, o, t))
        if t.oid == base_oid:
            return _Entry(mode, o.oid), (None if mode_clean else self.conflict(path, "mode", b, o, t))

        kind = "content" if b is not None else "add/add"
        if o.mode & _TYPE_MASK != 0o100000:
            # Symlink targets and submodule commits are not merged line by line.
            return _Entry(mode, o.oid), self.conflict(path, kind, b, o, t)
        # A base of another type (a symlink both sides replaced by files) is no base: Git merges
        # the two files as if both had added them.
        base_text = self.content(b) if b is not None and b.mode & _TYPE_MASK == 0o100000 else None
        ours_text = self.read(o.oid, OBJ_BLOB)
        theirs_text = self.read(t.oid, OBJ_BLOB)
        binary = any(is_binary(x) for x in (base_text or b"", ours_text, theirs_text))
        merged, clean = merge_blobs(base_text, ours_text, theirs_text, self.labels)
        entry = _Entry(mode, self.write(OBJ_BLOB, merged))
        if not clean:
            return entry, Conflict(
                path.decode("utf-8", "surrogateescape"), kind, self.content(b), ours_text, theirs_text,
                None if binary else merged,
            )
        return entry, (None if mode_clean else self.conflict(path, "mode", b, o, t))


def merge_trees(
    objects: MergeStore,
    base_tree: bytes | None,
    ours_tree: bytes,
    theirs_tree: bytes,
    *,
    labels: tuple[str, str] = ("ours", "theirs"),
) -> MergeResult:
    """Three-way merge of two trees against a base tree (None: no common history, an empty base).

    When clean, the merged tree and every blob and subtree it needs are written to ``objects``
    and ``tree`` is its id; otherwise nothing is written and ``tree`` is None. ``labels`` name the
    sides in conflict markers.
    """
    merger = _TreeMerger(objects, labels)
    tree = merger.merge_dir(b"", base_tree, ours_tree, theirs_tree)
    if merger.conflicts:
        # In Git's order: by full path, byte-wise (``a.txt`` before ``a/x``).
        ordered = sorted(merger.conflicts, key=lambda c: c.path.encode("utf-8", "surrogateescape"))
        return MergeResult(None, tuple(ordered))
    if tree is None:
        tree = merger.write(OBJ_TREE, b"")
    merger.flush()
    return MergeResult(tree, ())


# ============================================================================================
# Commits


def _best_common(graph: ObjectGraph, left: Iterable[bytes], right: Iterable[bytes]) -> tuple[bytes, ...]:
    """Common ancestors of ``left`` and ``right`` that no other common ancestor reaches, newest
    first (ties by id, so the order never depends on set iteration)."""
    right = list(right)
    reach_left = graph.ancestors(left)
    boundary = {r for r in right if r in reach_left}
    for c in graph.ancestors(right, stop=reach_left):
        boundary.update(p for p in graph.commit(c).parents if p in reach_left)
    if len(boundary) > 1:
        below = graph.ancestors([p for c in boundary for p in graph.commit(c).parents])
        boundary -= below
    return tuple(sorted(boundary, key=lambda c: (-graph.commit(c).time, c)))


def merge_bases(graph: ObjectGraph, a: bytes, b: bytes) -> tuple[bytes, ...]:
    """All best common ancestors of two commits (``git merge-base --all``), newest first."""
    return _best_common(graph, [a], [b])


def merge_base(graph: ObjectGraph, a: bytes, b: bytes) -> bytes | None:
    """The best common ancestor (``git merge-base``); of several (criss-cross), the newest."""
    bases = merge_bases(graph, a, b)
    return bases[0] if bases else None


def _base_tree(objects: MergeStore, graph: ObjectGraph, bases: tuple[bytes, ...], depth: int) -> bytes:
    """The tree to merge against. With several merge bases Git merges them into a virtual base
    (oldest first, each against the merge base of what is merged so far); we do the same while
    those inner merges are clean and otherwise use the newest base."""
    newest = graph.commit(bases[0]).tree
    if len(bases) == 1 or depth >= _MAX_VIRTUAL_DEPTH:
        return newest
    order = list(reversed(bases))
    merged = [order[0]]
    tree = graph.commit(order[0]).tree
    for nxt in order[1:]:
        inner = _best_common(graph, merged, [nxt])
        inner_tree = _base_tree(objects, graph, inner, depth + 1) if inner else None
        result = merge_trees(objects, inner_tree, tree, graph.commit(nxt).tree)
        if result.tree is None:
            return newest
        tree = result.tree
        merged.append(nxt)
    return tree


def merge_commits(
    objects: MergeStore,
    graph: ObjectGraph,
    ours: bytes,
    theirs: bytes,
    *,
    labels: tuple[str, str] = ("ours", "theirs"),
    allow_unrelated: bool = False,
) -> MergeResult:
    """Merge commit ``theirs`` into ``ours``.

    Theirs already contained in ours: ours' tree ("already up to date", not a fast-forward). Ours
    contained in theirs: theirs' tree with ``fast_forward`` set, so a caller can move the ref
    instead of making a merge commit. Otherwise a three-way merge of the trees against the merge
    base. Histories with no common ancestor raise :class:`UnrelatedHistories` unless
    ``allow_unrelated`` (then the base is the empty tree).
    """
    bases = merge_bases(graph, ours, theirs)
    if theirs in bases:
        return MergeResult(graph.commit(ours).tree, ())
    if ours in bases:
        return MergeResult(graph.commit(theirs).tree, (), fast_forward=True)
    if not bases and not allow_unrelated:
        raise UnrelatedHistories(f"{ours.decode()} and {theirs.decode()} have no common ancestor")
    base_tree = _base_tree(objects, graph, bases, 0) if bases else None
    return merge_trees(objects, base_tree, graph.commit(ours).tree, graph.commit(theirs).tree, labels=labels)
