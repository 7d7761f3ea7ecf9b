"""One parse of a tree object, shared by everything that reads it while a pack is received.

A push inflates each tree once and then both fsck (:mod:`storage.fsck`) and the connectivity check
(:class:`storage.graph.LinkCollector`) need its entries. :func:`canonical_entries` parses a tree
once for both, in bulk, when it is in the form git writes (almost every tree); the rest go through
fsck's entry-by-entry check and dulwich's parser (:func:`tree_entries`).
"""

from __future__ import annotations

import re

from dulwich.objects import parse_tree

#: A tree's entries as three parallel tuples: names, modes (as parsed, not canonicalised) and
#: hex object ids.
TreeEntries = tuple[tuple[bytes, ...], tuple[int, ...], tuple[bytes, ...]]

_EMPTY: TreeEntries = ((), (), ())


def tree_entries(raw: bytes) -> TreeEntries | None:
    """The entries of a tree, or None when dulwich cannot parse it (fsck then says why)."""
    try:
        parsed = parse_tree(raw, 20)
    except Exception:
        return None
    if not parsed:
        return _EMPTY
    names, modes, shas = zip(*parsed, strict=True)
    return names, modes, shas


#: A tree in canonical form as three parallel lists: names, modes as git spells them
#: (``b"100644"``, ``b"40000"``, ...) and binary 20-byte object ids; then the positions of the
#: directories (mode ``40000``).
CanonicalEntries = tuple[list[bytes], list[bytes], list[bytes], list[int]]

_CANONICAL_ENTRY = re.compile(rb"(100644|100755|40000|120000|160000) ([^\0/]+)\0(.{20})", re.DOTALL)


def canonical_entries(raw: bytes) -> CanonicalEntries | None:
    """The entries of a tree whose bytes are entries as git writes them: each mode one of the five
    git uses, spelt as git spells it, and each name non-empty without '/' or NUL. None for any
    other tree (fsck's entry-by-entry check then decides about it).

    One regex split finds the entries, and what lies between them: they cover the whole object
    (and so are exactly the entries a parser reading from the start would find, the format
    leaving no choice) if and only if nothing does.
    """
    parts = _CANONICAL_ENTRY.split(raw)
    if any(parts[0::4]):
        return None
    modes = parts[1::4]
    dirs: list[int] = []
    i = -1
    for _ in range(modes.count(b"40000")):
        i = modes.index(b"40000", i + 1)
        dirs.append(i)
    return parts[2::4], modes, parts[3::4], dirs
