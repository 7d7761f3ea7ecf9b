"""The object graph: what a fetch sends, checked against ``git rev-list --objects``; parsing."""

from __future__ import annotations

import pytest

from storage.errors import CorruptObject
from storage.graph import ObjectGraph, parse_commit, parse_tag_target
from storage.objects import MemoryObjectStore
from storage.packs import OBJ_BLOB, OBJ_COMMIT, OBJ_TREE
from tests.helpers import (
    BIG_V2,
    C1,
    C2,
    C3,
    C4,
    C6,
    C7,
    C8,
    M5,
    V1_0,
    commit_object,
    git,
    rev_list_objects,
    tree_object,
)

CASES = [
    ("repo", [C6], []),
    ("repo", [C6, C7, C6, C2, V1_0], []),  # 01's wants, the duplicate included
    ("repo", [C7], [C6]),
    ("repo", [C6], [C3]),
    ("repo", [C6], [C2]),
    ("repo", [V1_0], [C4]),
    ("repo", [C6], [C6]),
    ("repo", [C6, C7], [C1]),
    ("repo", [C6], [V1_0]),  # a have that is a tag
    ("advanced", [C8], [C6]),
    ("advanced", [C8], [C7, C6, M5, C2]),  # 06/07's haves
    ("advanced", [C8], [b"1" * 40, C2]),  # unknown haves are ignored
    ("advanced", [C8, C7], [C4]),
]


@pytest.mark.parametrize(("which", "wants", "haves"), CASES)
def test_objects_to_send_matches_rev_list(served, repo_c6, repo_c8, which, wants, haves) -> None:
    repo = repo_c6 if which == "repo" else repo_c8
    gitdir = served.repo if which == "repo" else served.advanced
    known_haves = [h for h in haves if repo.objects.has(h)]
    expected = rev_list_objects(gitdir, dict.fromkeys(wants), known_haves)
    order, known = repo.graph.objects_to_send(wants, haves)
    assert len(order) == len(set(order)), "an object is listed twice"
    assert set(order) == expected
    assert not (set(order) & known)
    types = [repo.objects.type_of(o) for o in order]
    # commits first, then tags, then trees and blobs
    firsts = [t for t in types if t in (OBJ_TREE, OBJ_BLOB)]
    assert types[len(types) - len(firsts) :] == firsts
    commits = [t for t in types if t == OBJ_COMMIT]
    assert types[: len(commits)] == commits


@pytest.mark.parametrize(("wants", "haves"), [([C6], [C4]), ([C8], [C6]), ([C7], [C3])])
def test_known_objects_cover_the_boundary_trees(served, repo_c8, wants, haves) -> None:
    """``known`` (bases a thin pack may use) holds the have commits and their trees' contents."""
    _, known = repo_c8.graph.objects_to_send(wants, haves)
    for have in haves:
        tree = parse_commit(repo_c8.objects.get(have)[1]).tree
        assert have in known
        listed = git("--git-dir", served.advanced, "ls-tree", "-r", "-t", tree.decode()).stdout
        assert {line.split()[2] for line in listed.splitlines()} <= known


def test_objects_to_send_for_a_tree_and_a_blob(served, repo_c6) -> None:
    tree = parse_commit(repo_c6.objects.get(C6)[1]).tree
    order, _ = repo_c6.graph.objects_to_send([tree], [])
    assert set(order) == rev_list_objects(served.repo, [tree])
    order, _ = repo_c6.graph.objects_to_send([BIG_V2], [])
    assert order == [BIG_V2]


def test_ancestors(repo_c6) -> None:
    g = repo_c6.graph
    assert g.ancestors([C6]) == {C6, M5, C4, C3, C2, C1}
    assert g.ancestors([C6], stop={C4}) == {C6, M5, C3, C2, C1}
    assert g.ancestors([C7]) == {C7, C3, C2, C1}
    assert g.ancestors([C6], cut={M5}) == {C6, M5}


def test_reaches_any(repo_c6) -> None:
    g = repo_c6.graph
    assert g.reaches_any(C6, {C3}, 0)
    assert not g.reaches_any(C7, {C4}, 0)
    assert g.reaches_any(C2, {C2}, 2**40)  # the start itself counts whatever its age
    assert not g.reaches_any(C6, {C1}, g.commit(C4).time)  # C1 is older than the cutoff


def test_peel(repo_c6) -> None:
    assert repo_c6.graph.peel(V1_0) == (M5, OBJ_COMMIT)
    assert repo_c6.graph.peel(C6) == (C6, OBJ_COMMIT)


def test_shallow_by_depth(repo_c6) -> None:
    g = repo_c6.graph
    assert g.shallow_by_depth([C6], 1) == ({C6}, set())
    assert g.shallow_by_depth([C6], 2) == ({M5}, {C6})
    assert g.shallow_by_depth([C6], 3) == ({C4, C3}, {C6, M5})
    shallow, within = g.shallow_by_depth([C6], 100)
    assert shallow == set() and within == {C6, M5, C4, C3, C2, C1}


def test_commit_and_tag_parsing(repo_c6) -> None:
    info = parse_commit(repo_c6.objects.get(M5)[1])
    assert info.parents == (C4, C3)
    assert info.time == 1112912293  # make-repo.sh: the fifth tick after 1112911993
    assert parse_tag_target(repo_c6.objects.get(V1_0)[1]) == (M5, OBJ_COMMIT)


@pytest.mark.parametrize("raw", [b"", b"parent " + C1 + b"\n", b"tree abc\n\nmsg"])
def test_commit_without_valid_tree_is_corrupt(raw: bytes) -> None:
    with pytest.raises(CorruptObject):
        parse_commit(raw)


@pytest.mark.parametrize("raw", [b"", b"object " + C1 + b"\n", b"object " + C1 + b"\ntype frob\n"])
def test_tag_without_target_is_corrupt(raw: bytes) -> None:
    with pytest.raises(CorruptObject):
        parse_tag_target(raw)


def test_wrong_types_and_malformed_trees_are_corrupt() -> None:
    store = MemoryObjectStore()
    blob = store.add_object(OBJ_BLOB, b"x")
    bad_tree = store.add_object(OBJ_TREE, b"100644 name-without-nul")
    g = ObjectGraph(store)
    with pytest.raises(CorruptObject):
        g.commit(blob)
    with pytest.raises(CorruptObject):
        g.tree(blob)
    with pytest.raises(CorruptObject):
        g.tree(bad_tree)


def test_gitlinks_are_not_followed() -> None:
    store = MemoryObjectStore()
    blob = store.add_object(OBJ_BLOB, b"file\n")
    submodule = b"5" * 40
    tree = store.add_object(OBJ_TREE, tree_object([(b"100644", b"f", blob), (b"160000", b"sub", submodule)]))
    commit = store.add_object(OBJ_COMMIT, commit_object(tree))
    order, _ = ObjectGraph(store).objects_to_send([commit], [])
    assert set(order) == {commit, tree, blob}
