"""The bulk shortcuts a push takes, checked against the exact paths they stand in for.

``treeparse.canonical_entries`` (one parse of a tree, shared by fsck and the connectivity check)
must read canonical trees as dulwich's parser does and refuse every other tree.
``fsck._plainly_fine`` (a tree is canonical and clean) must agree with the version it replaced,
which ``test_fsck.py`` checked against git; and whenever it says a tree is fine, git's
entry-by-entry check must find nothing. ``LinkCollector.first_missing`` proves connectivity in
bulk when it can; its verdict and ``covers_all`` must be the link-by-link walk's.
"""

from __future__ import annotations

import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import storage.fsck as fsck
from storage.graph import LinkCollector, ObjectGraph
from storage.packs import OBJ_BLOB, OBJ_COMMIT, OBJ_TAG, OBJ_TREE
from storage.treeparse import canonical_entries, tree_entries
from tests.helpers import commit_object, git_oid, tree_object

# -- trees ------------------------------------------------------------------------------------

_OLD_PLAIN_TREE = re.compile(rb"(?:(?:100644|100755|40000|120000|160000) [^\0/]+\0.{20})*", re.DOTALL)
_OLD_SPECIAL_NAME = re.compile(rb"\0([.gG~\xe2\xef][^\0]*)")
_OLD_PLAIN_ENTRY = re.compile(rb"(100644|100755|40000|120000|160000) ([^\0/]+)\0.{20}", re.DOTALL)


def old_plainly_fine(buf: bytes) -> bool:
    """The fast path as it was before the parse was shared (findall over the raw bytes)."""
    if bytes(20) in buf or not _OLD_PLAIN_TREE.fullmatch(buf):
        return False
    entries = _OLD_PLAIN_ENTRY.findall(buf)
    names = [name for _mode, name in entries]
    if len(set(names)) != len(names):
        return False
    keys = [name + b"/" if mode == b"40000" else name for mode, name in entries]
    if keys != sorted(keys):
        return False
    joined = b"\0" + b"\0".join(names)
    if b"\\" in joined:
        return False
    special = _OLD_SPECIAL_NAME.findall(joined)
    return not any(n in (b".", b"..") or any(fsck._special_names(n)) for n in special)


MODES = [b"100644", b"100755", b"40000", b"120000", b"160000", b"040000", b"100664", b"+100644",
         b"10644", b"0", b"1000644", b"\t40000", b"+40000", b"0o40000", b"4_0000", b"-100644", b"4000",
         b"\n100644", b"100644\n", b"", b"1006440"]
NAMES = [b"a", b"a.c", b"a-", b"a0", b"b", b"ab", b".git", b".gitmodules", b"gitmod~1", b"GIT~1", b".",
         b"git", b"gi7eba~1", b"Gi7d29~9", b"gitatt~3", b"getopt.py", b"git~1.", b"g~",
         b"..", b"a\\b", b"a/b", b"", b"g", b"\xe2\x80\x8c.git", b"~1", b".gitattributes", b"x y"]
OIDS = [bytes(20), b"\x01" * 20, b"\x00 1\x00" * 5, b"40000 a\x00" + b"\x02" * 12]

entry = st.tuples(st.sampled_from(MODES), st.sampled_from(NAMES), st.sampled_from(OIDS))


@st.composite
def trees(draw: st.DrawFn) -> bytes:
    entries = draw(st.lists(entry, max_size=7))
    if draw(st.booleans()):  # mostly in git's order, so that the other checks get a chance
        entries.sort(key=lambda e: e[1] + b"/" if e[0] in (b"40000", b"040000") else e[1])
    buf = b"".join(m + b" " + n + b"\0" + o for m, n, o in entries)
    cut = draw(st.sampled_from([0, 0, 0, 1, 5, 21]))
    return buf[: len(buf) - cut] if cut else buf


def slow_findings(buf: bytes, monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], list[tuple[str, bytes]]]:
    found = fsck._Findings(b"0" * 40)
    noted: list[tuple[str, bytes]] = []
    with monkeypatch.context() as m:
        m.setattr(fsck, "_plainly_fine", lambda *_args: False)
        fsck._fsck_tree(buf, found, lambda kind, blob: noted.append((kind, blob)))
    return [e.msg_id for e in found.errors], noted


@settings(max_examples=600, deadline=None, derandomize=True, database=None)
@given(buf=trees())
def test_plainly_fine_agrees_with_the_old_fast_path_and_git_rules(buf: bytes) -> None:
    fine = fsck._plainly_fine(buf, canonical_entries(buf))
    assert fine == old_plainly_fine(buf) == fsck._plainly_fine(buf)
    if fine:
        with pytest.MonkeyPatch.context() as m:
            assert slow_findings(buf, m) == ([], [])


@settings(max_examples=600, deadline=None, derandomize=True, database=None)
@given(buf=trees())
def test_canonical_entries_read_as_dulwich_reads(buf: bytes) -> None:
    canonical = canonical_entries(buf)
    assert (canonical is not None) == bool(_OLD_PLAIN_TREE.fullmatch(buf))
    if canonical is None:
        return
    names, modes, ids, dirs = canonical
    assert dirs == [i for i, m in enumerate(modes) if m == b"40000"]
    hex_ids = tuple(i.hex().encode() for i in ids)
    assert tree_entries(buf) == (tuple(names), tuple(int(m, 8) for m in modes), hex_ids)
    g = ObjectGraph(None)  # type: ignore[arg-type]
    if b"160000" not in modes:
        kids, dirs, expect = LinkCollector(g)._canonical_tree_ids(canonical)
        kids2, dirs2, expect2 = g.tree_ids(tree_entries(buf))  # type: ignore[arg-type]
        assert (list(kids), dirs, expect) == (list(kids2), dirs2, expect2)


def test_canonical_trees_take_the_fast_path() -> None:
    blob = git_oid(OBJ_BLOB, b"x")
    buf = tree_object([(b"100644", b"a.c", blob), (b"40000", b"a", blob), (b"100644", b"a-", blob),
                       (b"100755", b"b", blob), (b"120000", b"getopt.py", blob)])
    assert fsck._plainly_fine(buf, canonical_entries(buf))
    dup = tree_object([(b"100644", b"a", blob), (b"40000", b"a", blob)])
    assert not fsck._plainly_fine(dup, canonical_entries(dup))


def test_tree_ids_from_a_shared_parse() -> None:
    blob, sub = git_oid(OBJ_BLOB, b"x"), git_oid(OBJ_TREE, b"")
    buf = tree_object([(b"100644", b"f", blob), (b"40000", b"d", sub), (b"160000", b"m", b"1" * 40),
                       (b"100664", b"odd", blob)])
    g = ObjectGraph(None)  # type: ignore[arg-type]
    kids, dirs, expect = g.tree_ids(tree_entries(buf))  # type: ignore[arg-type]
    assert [g.oid(k) for k in kids] == [sub, blob, blob]
    assert dirs == [0] and expect == bytes([OBJ_TREE, OBJ_BLOB, OBJ_BLOB])
    assert g.parse_tree_ids(buf)[1] == [0]


# -- connectivity ------------------------------------------------------------------------------


class Stored:
    def __init__(self, objects: dict[bytes, int]) -> None:
        self.objects = objects

    def has(self, oid: bytes) -> bool:
        return oid in self.objects

    def type_of(self, oid: bytes) -> int:
        return self.objects[oid]

    def get(self, oid: bytes) -> tuple[int, bytes]:
        raise KeyError(oid)


def history(rng: random.Random) -> list[tuple[bytes, int, bytes]]:
    """A few commits of small trees, a tag, in pack order (commits, tags, trees, blobs)."""
    blobs = [(OBJ_BLOB, b"blob %d" % i) for i in range(rng.randint(1, 5))]
    bids = [git_oid(t, c) for t, c in blobs]
    objs: list[tuple[int, bytes]] = list(blobs)
    commits: list[bytes] = []
    trees: list[bytes] = []
    for n in range(rng.randint(1, 4)):
        entries = [(b"100644", b"f%d" % j, rng.choice(bids)) for j in range(rng.randint(0, 3))]
        if trees and rng.random() < 0.5:
            entries.append((b"40000", b"sub", rng.choice(trees)))
        if rng.random() < 0.1:  # a tree entry naming a blob as a directory: wrong type
            entries.append((b"40000", b"bad", rng.choice(bids)))
        if rng.random() < 0.1:
            entries.append((b"160000", b"module", b"2" * 40))  # gitlinks are never followed
        tree = tree_object(entries)
        trees.append(git_oid(OBJ_TREE, tree))
        objs.append((OBJ_TREE, tree))
        parents = [commits[-1]] if commits else []
        if rng.random() < 0.1:  # a parent that is a tree (its own, or an older one): wrong type
            parents.append(rng.choice(trees))
        commit = commit_object(trees[-1], parents, when=1112912000 + n)
        commits.append(git_oid(OBJ_COMMIT, commit))
        objs.append((OBJ_COMMIT, commit))
    tag = b"object %s\ntype commit\ntag v1\ntagger T <t@x> 1 +0000\n\nv1\n" % rng.choice(commits)
    objs.append((OBJ_TAG, tag))
    order = {OBJ_COMMIT: 0, OBJ_TAG: 1, OBJ_TREE: 2, OBJ_BLOB: 3}
    objs.sort(key=lambda o: order[o[0]])
    return [(git_oid(t, c), t, c) for t, c in objs]


@pytest.mark.parametrize("seed", range(300))
def test_first_missing_agrees_with_the_walk(seed: int) -> None:
    rng = random.Random(seed)
    objs = history(rng)
    into_empty = seed % 3 == 0  # everything received, nothing stored: the initial push
    stored = {} if into_empty else {oid: t for oid, t, _ in objs if rng.random() < 0.3}
    received = [o for o in objs
                if into_empty or (rng.random() < 0.9 and (o[0] not in stored or rng.random() < 0.3))]
    chance = rng.choice([0.4, 1.0])
    tips = [oid for oid, t, _ in objs if t in (OBJ_COMMIT, OBJ_TAG) and rng.random() < chance]
    if rng.random() < 0.1:
        tips.append(b"3" * 40)  # a tip nobody has
    g = ObjectGraph(None)  # type: ignore[arg-type]
    fast, slow = LinkCollector(g), LinkCollector(g)
    for oid, t, content in received:
        entries = canonical_entries(content) if t == OBJ_TREE else None
        fast(oid, t, content, entries)
        slow(oid, t, content)
    reader = Stored(stored)
    # receive-pack asks for all tips, then for each ref's tip alone: the bulk proof, done once,
    # must answer each question as the walk would.
    commits = [oid for oid, t, _ in objs if t in (OBJ_COMMIT, OBJ_TAG)]
    for question in (tips, [rng.choice(commits)], [b"3" * 40], tips):
        verdict = fast.first_missing(question, reader)
        expected = slow._walk(list(question), reader)
        assert (verdict is None) == (expected is None)
        if verdict is not None:
            assert verdict == expected
        assert fast.covers_all == slow.covers_all
