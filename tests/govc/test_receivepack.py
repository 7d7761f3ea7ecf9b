"""Pushes run through quarantine, checks and the ref transaction, compared with stock git: the
recorded transcripts and, for pushes no transcript holds, ``git receive-pack --stateless-rpc``."""

from __future__ import annotations

import random
import shutil

import pytest

from govc.receivepack import encode_outcome, receive
from govc.repository import Repository
from protocol.pktline import FLUSH_PKT, encode
from protocol.receive import PushRequestParser
from storage.packs import read_pack_object
from tests.helpers import (
    C2,
    C6,
    C7,
    C8,
    ZERO,
    commit_object,
    demux,
    git,
    git_oid,
    make_delta,
    make_pack,
    pkts,
    ref_delta_entry,
    split_pkts,
    transcript,
    tree_object,
    whole_entry,
)

NEW_MAIN = b"fc3b85588b06b9fd80f112800e91e4be9983b442"  # 14 and 17: main's fast-forward
TOPIC_12 = b"730985b7c778d75ebacd9f181c03c54efec72143"
TOPIC_14 = b"8073ea47b725bbaa211108d9aa3a001597523758"
EMPTY_PACK = make_pack([])


def parse(body: bytes, seed: int = 0):
    """The request and its pack, fed to the parser in small random slices."""
    parser = PushRequestParser()
    rng = random.Random(seed)
    pack = []
    pos = 0
    while pos < len(body):
        n = rng.randint(1, 64)
        chunk = body[pos : pos + n]
        pos += n
        if parser.done:
            pack.append(chunk)
        else:
            parser.feed(chunk)
            if parser.done:
                pack.append(parser.take_pack_data())
    assert parser.done
    return parser.request, b"".join(pack)


def push(repo: Repository, body: bytes, who: str = "tester") -> bytes:
    req, pack = parse(body)
    return b"".join(encode_outcome(req, receive(repo, req, pack, who)))


def push_body(
    commands, caps: bytes = b"report-status side-band-64k", pack: bytes | None = EMPTY_PACK, options=()
) -> bytes:
    body = b""
    for i, (old, new, name) in enumerate(commands):
        line = old + b" " + new + b" " + name.encode()
        body += encode(line + (b"\x00" + caps if i == 0 else b""))
    body += FLUSH_PKT
    if options:
        body += b"".join(encode(o) for o in options) + FLUSH_PKT
    return body + (pack or b"")


def recorded_pack(scenario: str) -> bytes:
    _, rest = split_pkts(transcript(scenario, 2, "request"))
    return rest


def report(response: bytes) -> list[bytes | str]:
    """The report-status lines inside band 1 of a side-band response."""
    d = demux(pkts(response))
    return pkts(d.bands[1])


def snapshot(repo: Repository):
    return (repo.refs.items(), repo.head_target, len(repo.objects), sorted(repo.objects.iter_oids()))


# -- the recorded pushes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "state", "refs_after"),
    [
        ("12-push-new-branch", "c6", {"refs/heads/topic": TOPIC_12}),
        ("13-push-delete-branch", "c6", {"refs/heads/feature": None}),
        ("14-push-atomic-two-refs", "c6", {"refs/heads/main": NEW_MAIN, "refs/heads/topic": TOPIC_14}),
        ("15-push-option-ci-skip", "c6", {"refs/heads/topic": TOPIC_12}),
        ("17-push-ref-moved-before-update", "c8", {"refs/heads/main": C8}),
        ("20-push-to-empty-repo", "empty", {"refs/heads/main": C6}),
    ],
)
def test_recorded_pushes_byte_for_byte(transcripts, repo_c6, repo_c8, scenario, state, refs_after) -> None:
    repo = {"c6": repo_c6, "c8": repo_c8, "empty": Repository("empty")}[state]
    before = dict(repo.refs.items())
    events = []
    repo.subscribe(events.append)
    response = push(repo, transcript(scenario, 2, "request"))
    # the whole body: band-2 messages (17: git's own "cannot lock ref" text), band-1 report, flush
    assert response == transcript(scenario, 2, "response")
    expected = {**before, **refs_after}
    assert dict(repo.refs.items()) == {k: v for k, v in expected.items() if v is not None}
    changed = {n: v for n, v in refs_after.items() if before.get(n) != v}
    if changed:
        assert len(events) == 1
        assert {c.name: c.new for c in events[0].changes} == changed
        assert events[0].source == "push" and events[0].who == "tester"
    else:
        assert events == []
    # every object the new refs point at is there and readable, all the way down
    tips = [v for v in repo.refs.list().values()]
    order, _ = repo.graph.objects_to_send(tips, [])
    for oid in order:
        repo.objects.get(oid)


def test_push_options_reach_the_event(transcripts, repo_c6) -> None:
    events = []
    repo_c6.subscribe(events.append)
    push(repo_c6, transcript("15-push-option-ci-skip", 2, "request"))
    (event,) = events
    assert event.push_options == ("ci.skip",)


def test_push_writes_reflog(transcripts, repo_c6) -> None:
    push(repo_c6, transcript("14-push-atomic-two-refs", 2, "request"), who="alice")
    (entry,) = repo_c6.refs.reflog("refs/heads/topic")
    assert (entry.old, entry.new, entry.who) == (ZERO, TOPIC_14, "alice")
    assert repo_c6.refs.reflog("refs/heads/main")[-1].old == C6


def test_thin_push_is_completed_and_stored(transcripts, repo_c6, tmp_path) -> None:
    """12 sends ref-deltas against server objects; what is stored must stand alone."""
    packs_before = len(repo_c6.objects.packs)
    push(repo_c6, transcript("12-push-new-branch", 2, "request"))
    assert len(repo_c6.objects.packs) == packs_before + 1
    stored = repo_c6.objects.packs[-1]
    target = tmp_path / "t.git"
    git("init", "-q", "--bare", target)
    result = git("--git-dir", target, "index-pack", "--stdin", input=stored.data, check=False)
    assert result.returncode == 0, result.stderr
    for pos in range(len(stored)):
        read_pack_object(stored, pos)


def test_17_leaves_main_where_it_was(transcripts, repo_c8) -> None:
    response = push(repo_c8, transcript("17-push-ref-moved-before-update", 2, "request"))
    assert report(response) == [b"unpack ok\n", b"ng refs/heads/main failed to update ref\n", "flush"]
    assert repo_c8.refs.get("refs/heads/main") == C8
    assert len(repo_c8.refs.reflog("refs/heads/main")) == 1


# -- HEAD of a repository born from a push ----------------------------------------------------


@pytest.mark.parametrize(
    ("branches", "head"),
    [
        (["refs/heads/main"], "refs/heads/main"),
        (["refs/heads/dev"], "refs/heads/dev"),
        (["refs/heads/dev", "refs/heads/main"], "refs/heads/main"),
        (["refs/heads/b", "refs/heads/a"], "refs/heads/b"),
        (["refs/tags/v1", "refs/heads/x"], "refs/heads/x"),
    ],
)
def test_head_of_a_new_repository(transcripts, branches, head) -> None:
    pack = recorded_pack("20-push-to-empty-repo")  # all of main's history at c6
    repo = Repository("new")
    response = push(repo, push_body([(ZERO, C6, b) for b in branches], pack=pack))
    assert report(response)[1:-1] == [f"ok {b}\n".encode() for b in branches]
    assert repo.head_target == head
    assert repo.refs.get("HEAD") == C6


def test_head_stays_when_only_tags_are_pushed(transcripts) -> None:
    repo = Repository("new")
    push(repo, push_body([(ZERO, C6, "refs/tags/t")], pack=recorded_pack("20-push-to-empty-repo")))
    assert repo.head_target == "refs/heads/main"
    assert repo.refs.get("HEAD") is None


def test_head_of_an_existing_repository_is_not_moved(repo_c6) -> None:
    push(repo_c6, push_body([(ZERO, C7, "refs/heads/other")]))
    assert repo_c6.head_target == "refs/heads/main"


# -- rejected pushes leave nothing behind -----------------------------------------------------


def test_atomic_push_with_one_bad_command_changes_nothing(transcripts, repo_c6) -> None:
    before = snapshot(repo_c6)
    body = push_body(
        [(C6, NEW_MAIN, "refs/heads/main"), (ZERO, TOPIC_14, "refs/heads/a..b")],
        caps=b"report-status side-band-64k atomic",
        pack=recorded_pack("14-push-atomic-two-refs"),
    )
    lines = report(push(repo_c6, body))
    assert lines == [
        b"unpack ok\n",
        b"ng refs/heads/main atomic push failure\n",
        b"ng refs/heads/a..b funny refname\n",
        "flush",
    ]
    assert snapshot(repo_c6) == before


def test_atomic_push_with_a_stale_ref_changes_no_ref(transcripts, repo_c6) -> None:
    refs_before = repo_c6.refs.items()
    events = []
    repo_c6.subscribe(events.append)
    body = push_body(
        [(C6, NEW_MAIN, "refs/heads/main"), (C7, TOPIC_14, "refs/heads/topic")],  # topic does not exist
        caps=b"report-status side-band-64k atomic",
        pack=recorded_pack("14-push-atomic-two-refs"),
    )
    lines = report(push(repo_c6, body))
    assert lines[0] == b"unpack ok\n"
    assert all(line.startswith(b"ng ") for line in lines[1:-1])
    assert repo_c6.refs.items() == refs_before
    assert events == []


def test_non_atomic_push_applies_what_it_can(transcripts, repo_c6) -> None:
    body = push_body(
        [(C6, NEW_MAIN, "refs/heads/main"), (C7, TOPIC_14, "refs/heads/topic")],
        pack=recorded_pack("14-push-atomic-two-refs"),
    )
    lines = report(push(repo_c6, body))
    assert lines[1:-1] == [b"ok refs/heads/main\n", b"ng refs/heads/topic failed to update ref\n"]
    assert repo_c6.refs.get("refs/heads/main") == NEW_MAIN
    assert repo_c6.refs.get("refs/heads/topic") is None


@pytest.mark.parametrize(
    "pack",
    [
        pytest.param(lambda p: p[:-1] + bytes([p[-1] ^ 1]), id="bad-checksum"),
        pytest.param(lambda p: p[: len(p) // 2], id="truncated"),
        pytest.param(lambda p: b"", id="no-pack"),
        pytest.param(lambda p: b"PACK\x00\x00\x00\x02", id="header-only"),
    ],
)
def test_bad_pack_leaves_no_objects_and_no_refs(transcripts, repo_c6, pack) -> None:
    before = snapshot(repo_c6)
    body = push_body([(ZERO, TOPIC_12, "refs/heads/topic")], pack=pack(recorded_pack("12-push-new-branch")))
    lines = report(push(repo_c6, body))
    assert lines[0].startswith(b"unpack ") and lines[0] != b"unpack ok\n"
    assert lines[1:] == [b"ng refs/heads/topic unpacker error\n", "flush"]
    assert snapshot(repo_c6) == before


def test_thin_pack_without_its_bases_leaves_nothing(transcripts) -> None:
    repo = Repository("empty")
    before = snapshot(repo)
    lines = report(push(repo, transcript("12-push-new-branch", 2, "request")))
    assert lines[0] != b"unpack ok\n"
    assert snapshot(repo) == before


def test_missing_objects_leave_no_objects_and_no_refs(repo_c6) -> None:
    """A pack that does not hold what the new ref needs: nothing of it is kept."""
    blob = b"orphan content\n"
    missing_blob = git_oid(3, b"never sent\n")
    tree = tree_object([(b"100644", b"a", git_oid(3, blob)), (b"100644", b"b", missing_blob)])
    commit = commit_object(git_oid(2, tree), [C6])
    pack = make_pack([whole_entry(1, commit), whole_entry(2, tree), whole_entry(3, blob)])
    before = snapshot(repo_c6)
    lines = report(push(repo_c6, push_body([(ZERO, git_oid(1, commit), "refs/heads/x")], pack=pack)))
    assert lines == [b"unpack ok\n", b"ng refs/heads/x missing necessary objects\n", "flush"]
    assert snapshot(repo_c6) == before


def test_missing_tip_with_empty_pack(repo_c6) -> None:
    before = snapshot(repo_c6)
    lines = report(push(repo_c6, push_body([(ZERO, b"7" * 40, "refs/heads/x")])))
    assert lines[1] == b"ng refs/heads/x missing necessary objects\n"
    assert snapshot(repo_c6) == before


def test_commit_whose_tree_is_a_blob_is_refused(repo_c6) -> None:
    """git's connectivity check fails ("Object ... not a tree", ng missing necessary objects). A
    commit accepted with a blob for a tree would break every later clone of the repository."""
    blob = b"not a tree\n"
    commit = commit_object(git_oid(3, blob), [C6])
    pack = make_pack([whole_entry(3, blob), whole_entry(1, commit)])
    before = snapshot(repo_c6)
    lines = report(push(repo_c6, push_body([(ZERO, git_oid(1, commit), "refs/heads/x")], pack=pack)))
    assert lines[1] != b"ok refs/heads/x\n"
    assert snapshot(repo_c6) == before


def test_commit_whose_parent_is_a_tree_is_refused(repo_c6) -> None:
    tree_of_c6 = repo_c6.graph.commit(C6).tree
    commit = commit_object(tree_of_c6, [tree_of_c6])
    pack = make_pack([whole_entry(1, commit)])
    lines = report(push(repo_c6, push_body([(ZERO, git_oid(1, commit), "refs/heads/x")], pack=pack)))
    assert lines[1] != b"ok refs/heads/x\n"
    assert repo_c6.refs.get("refs/heads/x") is None


def test_pushed_objects_stay_readable(repo_c6) -> None:
    """A pack that sends a blob whole and again as a ref-delta against itself (git's index-pack
    refuses it: "REF_DELTA ... already resolved (duplicate base)"). If govc takes the push, the
    blob must still be readable, or every clone of the repository fails from then on."""
    blob = b"twice\n"
    blob_oid = git_oid(3, blob)
    tree = tree_object([(b"100644", b"f", blob_oid)])
    commit = commit_object(git_oid(2, tree), [C6])
    pack = make_pack(
        [
            whole_entry(1, commit),
            whole_entry(2, tree),
            whole_entry(3, blob),
            ref_delta_entry(blob_oid, make_delta(blob, blob)),
        ]
    )
    lines = report(push(repo_c6, push_body([(ZERO, git_oid(1, commit), "refs/heads/x")], pack=pack)))
    if lines[1] == b"ok refs/heads/x\n":
        assert repo_c6.objects.get(blob_oid) == (3, blob)


@pytest.mark.parametrize("name", ["refs/heads/a..b", "HEAD", "refs/heads/x.lock", "refs/heads/a b", "main"])
def test_funny_refnames(repo_c6, name: str) -> None:
    before = snapshot(repo_c6)
    lines = report(push(repo_c6, push_body([(ZERO, C6, name)])))
    assert lines[1] == f"ng {name} funny refname\n".encode()
    assert snapshot(repo_c6) == before


def test_delete_current_branch_is_refused(repo_c6) -> None:
    lines = report(push(repo_c6, push_body([(C6, ZERO, "refs/heads/main")], pack=None)))
    assert lines == [
        b"unpack ok\n",
        b"ng refs/heads/main deletion of the current branch prohibited\n",
        "flush",
    ]
    assert repo_c6.refs.get("refs/heads/main") == C6


def test_directory_file_conflict(repo_c6) -> None:
    response = push(repo_c6, push_body([(ZERO, C6, "refs/heads/main/sub")]))
    assert report(response)[1] == b"ng refs/heads/main/sub failed to update ref\n"
    assert b"refs/heads/main" in demux(pkts(response)).bands[2]
    assert repo_c6.refs.get("refs/heads/main/sub") is None


def test_non_commit_on_a_branch_but_fine_on_a_tag(repo_c6) -> None:
    blob = repo_c6.graph.tree(repo_c6.graph.commit(C6).tree)[0][0]
    lines = report(push(repo_c6, push_body([(ZERO, blob, "refs/heads/b"), (ZERO, blob, "refs/tags/b")])))
    assert lines[1:3] == [b"ng refs/heads/b failed to update ref\n", b"ok refs/tags/b\n"]


def test_report_without_side_band(repo_c6) -> None:
    response = push(repo_c6, push_body([(ZERO, C6, "refs/heads/copy")], caps=b"report-status"))
    assert pkts(response) == [b"unpack ok\n", b"ok refs/heads/copy\n", "flush"]


def test_no_report_asked_no_report_sent(repo_c6) -> None:
    assert push(repo_c6, push_body([(ZERO, C6, "refs/heads/copy")], caps=b"agent=x")) == b""
    assert repo_c6.refs.get("refs/heads/copy") == C6


# -- pushes no transcript holds, answered by git itself ---------------------------------------

GIT_CASES = {
    "atomic-stale": (
        [(C6, NEW_MAIN, "refs/heads/main"), (C7, TOPIC_14, "refs/heads/topic")],
        b" atomic",
        "14",
    ),
    "atomic-stale-second": (
        [(ZERO, TOPIC_14, "refs/heads/topic"), (C7, NEW_MAIN, "refs/heads/main")],
        b" atomic",
        "14",
    ),
    "atomic-funny": (
        [(C6, NEW_MAIN, "refs/heads/main"), (ZERO, TOPIC_14, "refs/heads/a..b")],
        b" atomic",
        "14",
    ),
    "stale": ([(C6, NEW_MAIN, "refs/heads/main"), (C7, TOPIC_14, "refs/heads/topic")], b"", "14"),
    "funny": ([(ZERO, TOPIC_14, "refs/heads/a..b")], b"", "14"),
    "head": ([(C6, NEW_MAIN, "HEAD")], b"", "14"),
    "delete-current": ([(C6, ZERO, "refs/heads/main")], b"", None),
    "delete-two": ([(C7, ZERO, "refs/heads/feature"), (C2, ZERO, "refs/tags/light")], b"", None),
    "missing": ([(ZERO, TOPIC_14, "refs/heads/topic")], b"", "empty"),
    "dir-file": ([(ZERO, TOPIC_14, "refs/heads/main/x")], b"", "14"),
    "blob-to-branch": ([(ZERO, b"f905740bb145fd20409abcb452adf6cc545af695", "refs/heads/b")], b"", "empty"),
    "blob-to-tag": ([(ZERO, b"f905740bb145fd20409abcb452adf6cc545af695", "refs/tags/b")], b"", "empty"),
    "tag-object": ([(ZERO, b"cec2693e9639a0f8a82f26ac8411312862470857", "refs/tags/again")], b"", "empty"),
    "create-existing": ([(ZERO, C6, "refs/heads/feature")], b"", "empty"),
}


@pytest.mark.parametrize("case", list(GIT_CASES), ids=list(GIT_CASES))
def test_report_status_as_git(served, repo_c6, tmp_path, case: str) -> None:
    commands, extra_caps, pack_from = GIT_CASES[case]
    packs = {None: None, "empty": EMPTY_PACK, "14": recorded_pack("14-push-atomic-two-refs")}
    pack = packs[pack_from]
    body = push_body(commands, caps=b"report-status side-band-64k" + extra_caps, pack=pack)
    copy = tmp_path / "r.git"
    shutil.copytree(served.repo, copy)
    theirs = git("receive-pack", "--stateless-rpc", copy, input=body, check=False).stdout
    mine = push(repo_c6, body)
    assert report(mine) == report(theirs)
    refs_after = git("--git-dir", copy, "for-each-ref", "--format=%(objectname) %(refname)").stdout
    assert dict(repo_c6.refs.items()) == {
        line.split()[1].decode(): line.split()[0] for line in refs_after.splitlines()
    }
