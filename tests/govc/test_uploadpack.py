"""Fetches answered from a Repository, compared with stock git: the recorded transcripts and, for
requests no transcript holds, ``git upload-pack --stateless-rpc`` run on the same repository."""

from __future__ import annotations

import gzip
import json
import struct

import pytest

from govc.repository import Repository
from govc.uploadpack import upload_pack_v0, upload_pack_v2, v0_advertisement, v2_advertisement
from protocol.pktline import DELIM_PKT, FLUSH_PKT, encode, encode_line
from storage.interfaces import RefUpdate
from storage.packs import PackFormatError, index_pack
from tests.helpers import (
    C2,
    C4,
    C6,
    C7,
    M5,
    TRANSCRIPTS,
    V1_0,
    ZERO,
    commit_object,
    demux,
    git,
    git_oid,
    pkts,
    rev_list_objects,
    split_pkts,
    transcript,
    tree_object,
)

UNKNOWN = b"1" * 40
ADVANCED = {"06", "07", "21", "22"}  # scenarios recorded after make-repo.sh advance
EMPTY = {"18", "19", "20"}


def answer(gen) -> bytes:
    return b"".join(gen)


def sent_objects(pack: bytes, repo: Repository) -> set[bytes]:
    """The objects a (possibly thin) pack carries, indexed against the server's store."""
    count = struct.unpack(">I", pack[8:12])[0]
    stored = index_pack(pack, repo.objects.get)
    return set(stored.oids[:count])


def repo_for(scenario: str, repo_c6, repo_c8):
    key = scenario[:2]
    if key in EMPTY:
        return Repository("empty")
    return repo_c8 if key in ADVANCED else repo_c6


# -- every recorded upload-pack POST ----------------------------------------------------------


def _upload_pack_posts():
    if not TRANSCRIPTS.is_dir():
        return []
    out = []
    for folder in sorted(p for p in TRANSCRIPTS.iterdir() if p.is_dir()):
        meta = json.loads((folder / "exchanges.json").read_text())
        for ex in meta["exchanges"]:
            req = ex["request"]
            if req["method"] != "POST" or not req["target"].endswith("/git-upload-pack"):
                continue
            headers = dict(req["headers"])
            out.append(
                pytest.param(
                    folder.name,
                    ex["exchange"],
                    headers.get("Git-Protocol") == "version=2",
                    headers.get("Content-Encoding") == "gzip",
                    id=f"{folder.name}/{ex['exchange']}",
                )
            )
    return out


@pytest.mark.parametrize(("scenario", "exchange", "v2", "gzipped"), _upload_pack_posts())
def test_recorded_fetches(served, repo_c6, repo_c8, scenario, exchange, v2, gzipped) -> None:
    """Everything but progress and the pack bytes equals git's answer byte for byte (ls-refs,
    acknowledgments, shallow-info, ACK/NAK, section delimiters, flushes); the pack carries the
    same objects."""
    repo = repo_for(scenario, repo_c6, repo_c8)
    body = transcript(scenario, exchange, "request")
    if gzipped:
        body = gzip.decompress(body)
    ours = answer((upload_pack_v2 if v2 else upload_pack_v0)(repo, body))
    recorded = transcript(scenario, exchange, "response")
    mine, theirs = demux(pkts(ours)), demux(pkts(recorded))
    assert mine.lines == theirs.lines
    assert mine.trailer == theirs.trailer
    assert mine.bands[3] == b""
    if not theirs.bands[1]:
        assert mine.bands[1] == b""
        return
    got, expected = sent_objects(mine.bands[1], repo), sent_objects(theirs.bands[1], repo)
    if (scenario, exchange) == ("10-fetch-deepen-2-v2", 3):
        # git also leaves out what the client holds through its shallow tip c6; govc may send
        # such objects again, but never omits one.
        assert got >= expected
        assert got - expected <= rev_list_objects(served.repo, [C6])
    else:
        assert got == expected


def test_recorded_fetches_were_found() -> None:
    if not TRANSCRIPTS.is_dir():
        pytest.skip("no transcripts")
    assert len(_upload_pack_posts()) >= 25


def test_clone_v2_layout(transcripts, repo_c6) -> None:
    ours = answer(upload_pack_v2(repo_c6, transcript("01-clone-v2", 3, "request")))
    packets = pkts(ours)
    assert packets[0] == b"packfile\n"
    assert packets[-1] == "flush"
    d = demux(packets[1:])
    assert d.lines == []
    assert d.bands[2].startswith(b"Enumerating objects: 32")
    assert all(size <= 65520 for _, size in d.band_packets)
    stored = index_pack(d.bands[1])  # a complete pack: the client has nothing
    assert len(stored) == 32


def test_clone_v0_starts_with_nak(transcripts, repo_c6) -> None:
    ours = answer(upload_pack_v0(repo_c6, transcript("02-clone-v0", 2, "request")))
    assert ours.startswith(b"0008NAK\n")
    assert ours.endswith(FLUSH_PKT)


def test_gzip_request_of_21_inflates_and_fetches(transcripts, repo_c8) -> None:
    body = gzip.decompress(transcript("21-fetch-many-haves-v2", 4, "request"))
    assert body == transcript("21-fetch-many-haves-v2", 4, "request.inflated")
    mine = demux(pkts(answer(upload_pack_v2(repo_c8, body))))
    theirs = demux(pkts(transcript("21-fetch-many-haves-v2", 4, "response")))
    assert mine.lines == theirs.lines
    assert theirs.lines[-3:] == [b"ready\n", "delim", b"packfile\n"]


# -- advertisements ---------------------------------------------------------------------------


def _first_line_parts(payload: bytes) -> tuple[bytes, set[str]]:
    refpart, _, caps = payload.rstrip(b"\n").partition(b"\x00")
    return refpart, set(caps.decode().split())


@pytest.mark.parametrize(
    ("scenario", "advanced"),
    [("02-clone-v0", False), ("05-fetch-up-to-date-v0", False), ("07-fetch-incremental-v0", True)],
)
def test_v0_upload_pack_advertisement(transcripts, repo_c6, repo_c8, scenario, advanced) -> None:
    repo = repo_c8 if advanced else repo_c6
    ours = pkts(v0_advertisement(repo, "git-upload-pack"))
    recorded = pkts(transcript(scenario, 1, "response"))
    assert ours[:2] == recorded[:2] == [b"# service=git-upload-pack\n", "flush"]
    assert ours[3:] == recorded[3:]  # every ref line after the first, the peeled tag, the flush
    our_ref, our_caps = _first_line_parts(ours[2])
    their_ref, _their_caps = _first_line_parts(recorded[2])
    assert our_ref == their_ref
    assert "symref=HEAD:refs/heads/main" in our_caps
    needed = {"multi_ack_detailed", "side-band-64k", "thin-pack", "ofs-delta", "no-done", "include-tag"}
    assert needed <= our_caps


@pytest.mark.parametrize(
    "scenario", ["12-push-new-branch", "13-push-delete-branch", "14-push-atomic-two-refs"]
)
def test_receive_pack_advertisement(transcripts, repo_c6, scenario) -> None:
    ours = pkts(v0_advertisement(repo_c6, "git-receive-pack"))
    recorded = pkts(transcript(scenario, 1, "response"))
    assert ours[:2] == recorded[:2] == [b"# service=git-receive-pack\n", "flush"]
    assert ours[3:] == recorded[3:]  # no HEAD, no peeled lines
    our_ref, our_caps = _first_line_parts(ours[2])
    their_ref, their_caps = _first_line_parts(recorded[2])
    assert our_ref == their_ref
    assert their_caps - {"agent=git/2.39.5"} <= our_caps


def test_receive_pack_advertisement_of_empty_repository(transcripts) -> None:
    ours = pkts(v0_advertisement(Repository("e"), "git-receive-pack"))
    recorded = pkts(transcript("20-push-to-empty-repo", 1, "response"))
    assert len(ours) == len(recorded) == 4
    assert ours[:2] == recorded[:2]
    assert ours[3] == recorded[3] == "flush"
    our_ref, our_caps = _first_line_parts(ours[2])
    their_ref, their_caps = _first_line_parts(recorded[2])
    assert our_ref == their_ref == ZERO + b" capabilities^{}"
    assert their_caps - {"agent=git/2.39.5"} <= our_caps


def test_upload_pack_advertisement_of_empty_repository(transcripts) -> None:
    """git 2.39 sends no line at all (18); later gits send ``capabilities^{}``. Either way: no
    ref, no HEAD, and nothing the client could take for a branch."""
    ours = pkts(v0_advertisement(Repository("e"), "git-upload-pack"))
    recorded = pkts(transcript("18-clone-empty-v0", 1, "response"))
    assert ours[:2] == recorded[:2]
    assert ours[-1] == "flush"
    middle = ours[2:-1]
    assert len(middle) <= 1
    if middle:
        ref, caps = _first_line_parts(middle[0])
        assert ref == ZERO + b" capabilities^{}"
        assert not any(c.startswith("symref=") for c in caps)


def test_v2_advertisement(transcripts) -> None:
    ours = pkts(v2_advertisement())
    recorded = pkts(transcript("01-clone-v2", 1, "response"))
    assert ours[0] == recorded[0] == b"version 2\n"
    assert ours[-1] == "flush"
    names = {p.rstrip(b"\n").split(b"=")[0] for p in ours[1:-1]}
    assert {b"agent", b"ls-refs", b"fetch", b"object-format"} <= names
    assert b"ls-refs=unborn\n" in ours


# -- refusals and options ---------------------------------------------------------------------


def test_not_our_ref_v0(repo_c6) -> None:
    body = (
        encode_line(b"want " + UNKNOWN + b" multi_ack_detailed side-band-64k")
        + FLUSH_PKT
        + encode_line(b"done")
    )
    assert pkts(answer(upload_pack_v0(repo_c6, body))) == [b"ERR upload-pack: not our ref " + UNKNOWN]


def test_not_our_ref_v2(repo_c6) -> None:
    body = (
        encode(b"command=fetch")
        + DELIM_PKT
        + encode_line(b"want " + UNKNOWN)
        + encode_line(b"done")
        + FLUSH_PKT
    )
    assert pkts(answer(upload_pack_v2(repo_c6, body))) == [b"ERR upload-pack: not our ref " + UNKNOWN]


def test_v2_bare_flush_answers_nothing(repo_c6) -> None:
    assert answer(upload_pack_v2(repo_c6, FLUSH_PKT)) == b""


def fetch_v0(repo, caps: bytes, wants, haves=(), done=True) -> bytes:
    body = encode_line(b"want " + wants[0] + b" " + caps) + b"".join(
        encode_line(b"want " + w) for w in wants[1:]
    )
    body += FLUSH_PKT + b"".join(encode_line(b"have " + h) for h in haves)
    body += encode_line(b"done") if done else FLUSH_PKT
    return answer(upload_pack_v0(repo, body))


def test_plain_side_band_packets_are_at_most_1000_bytes(repo_c6) -> None:
    """A client that asked for ``side-band`` (not 64k) gets pkt-lines of at most 1000 bytes."""
    out = fetch_v0(repo_c6, b"multi_ack_detailed side-band ofs-delta", [C6])
    d = demux(pkts(out))
    assert d.bands[1][:4] == b"PACK"
    assert max(size for _, size in d.band_packets) <= 1000


def test_no_side_band_sends_the_raw_pack(repo_c6) -> None:
    out = fetch_v0(repo_c6, b"multi_ack_detailed ofs-delta", [C6])
    packets, rest = split_pkts(out)
    assert packets == [b"NAK\n"]
    assert len(index_pack(rest)) == len(objects_for(repo_c6, [C6]))


def objects_for(repo, wants) -> list[bytes]:
    order, _ = repo.graph.objects_to_send(wants, [])
    return order


def test_no_progress(repo_c6) -> None:
    out = fetch_v0(repo_c6, b"multi_ack_detailed side-band-64k no-progress", [C6])
    d = demux(pkts(out))
    assert d.bands[2] == b""
    assert d.bands[1][:4] == b"PACK"
    out = fetch_v0(repo_c6, b"multi_ack_detailed side-band-64k", [C6])
    assert demux(pkts(out)).bands[2] != b""


@pytest.mark.parametrize("include_tag", [True, False])
def test_include_tag(repo_c6, include_tag: bool) -> None:
    caps = b"multi_ack_detailed side-band-64k ofs-delta" + (b" include-tag" if include_tag else b"")
    out = fetch_v0(repo_c6, caps, [C6], [C2])
    sent = sent_objects(demux(pkts(out)).bands[1], repo_c6)
    assert M5 in sent
    assert (V1_0 in sent) == include_tag


def test_thin_pack_only_when_asked(repo_c6) -> None:
    for caps, thin in ((b"side-band-64k ofs-delta thin-pack", True), (b"side-band-64k ofs-delta", False)):
        out = fetch_v0(repo_c6, b"multi_ack_detailed " + caps, [C6], [C2])
        pack = demux(pkts(out)).bands[1]
        count = struct.unpack(">I", pack[8:12])[0]
        completed = index_pack(pack, repo_c6.objects.get)
        assert (len(completed) > count) == thin


def test_unreadable_tree_mid_fetch_is_a_band_3_error() -> None:
    """A stored tree that cannot be inflated stops the fetch with git's fatal band-3 message
    instead of a truncated pack."""
    repo = Repository("broken")
    blob = repo.objects.add_object(3, b"file\n")
    tree = tree_object([(b"100644", b"f", blob)])
    tree_oid = git_oid(2, tree)
    repo.objects.add_compressed(tree_oid, 2, len(tree), b"this is not zlib")
    commit = repo.objects.add_object(1, commit_object(tree_oid))
    repo.update_refs([RefUpdate("refs/heads/main", commit)], who="t", message="t", source="test")
    out = fetch_v0(repo, b"multi_ack_detailed side-band-64k", [commit])
    d = demux(pkts(out))
    assert b"upload-pack" in d.bands[3]
    if d.bands[1]:  # whatever pack data went out before the error is not a usable pack
        with pytest.raises(PackFormatError):
            index_pack(d.bands[1])


# -- requests no transcript holds, answered by git itself -------------------------------------


def git_answer(gitdir, body: bytes, v2: bool) -> bytes:
    """git's upload-pack, configured as the transcripts' server was."""
    env = {"GIT_PROTOCOL": "version=2"} if v2 else {}
    return git(
        "-c",
        "uploadpack.allowFilter=true",
        "-c",
        "uploadpack.allowAnySHA1InWant=true",
        "upload-pack",
        "--stateless-rpc",
        gitdir,
        input=body,
        env=env,
        check=False,
    ).stdout


def v0_body(caps: bytes, wants, haves, end: str) -> bytes:
    body = encode_line(b"want " + wants[0] + (b" " + caps if caps else b""))
    body += b"".join(encode_line(b"want " + w) for w in wants[1:]) + FLUSH_PKT
    body += b"".join(encode_line(b"have " + h) for h in haves)
    return body + {"done": encode_line(b"done"), "flush": FLUSH_PKT, "none": b""}[end]


def v2_body(args: list[bytes]) -> bytes:
    return (
        encode(b"command=fetch")
        + encode(b"object-format=sha1")
        + DELIM_PKT
        + b"".join(encode_line(a) for a in args)
        + FLUSH_PKT
    )


V0_CASES = {
    "mad-nodone-common": (b"multi_ack_detailed no-done side-band-64k", [C6], [C4], "flush"),
    "mad-nodone-two-common": (b"multi_ack_detailed no-done side-band-64k", [C6], [C4, C2], "flush"),
    "mad-unknown-only": (b"multi_ack_detailed no-done side-band-64k", [C6], [UNKNOWN, b"2" * 40], "flush"),
    "mad-no-give-up": (b"multi_ack_detailed side-band-64k", [C6, C7], [C7], "flush"),
    "mad-ready-no-nodone": (b"multi_ack_detailed side-band-64k", [C6], [C4], "flush"),
    "mad-done-no-haves": (b"multi_ack_detailed side-band-64k", [C6], [], "done"),
    "mad-done-unknown": (b"multi_ack_detailed side-band-64k", [C6], [UNKNOWN], "done"),
    "ma-common": (b"multi_ack side-band-64k", [C6], [C4], "flush"),
    "ma-done": (b"multi_ack side-band-64k", [C6], [C4, C2], "done"),
    "plain-common": (b"side-band-64k", [C6], [C4], "flush"),
    "plain-done": (b"side-band-64k", [C6], [C4], "done"),
    "plain-unknown": (b"side-band-64k", [C6], [UNKNOWN], "flush"),
    "plain-no-haves": (b"side-band-64k", [C6], [], "flush"),
    "wants-only": (b"multi_ack_detailed side-band-64k", [C6], [], "none"),
    "tag-want": (b"multi_ack_detailed side-band-64k include-tag", [V1_0], [C2], "done"),
}


@pytest.mark.parametrize("case", list(V0_CASES), ids=list(V0_CASES))
def test_v0_negotiation_as_git(served, repo_c6, case: str) -> None:
    caps, wants, haves, end = V0_CASES[case]
    body = v0_body(caps, wants, haves, end)
    mine = demux(pkts(answer(upload_pack_v0(repo_c6, body))))
    theirs = demux(pkts(git_answer(served.repo, body, v2=False)))
    assert mine.lines == theirs.lines
    assert bool(mine.bands[1]) == bool(theirs.bands[1])
    assert mine.trailer == theirs.trailer


V2_CASES = {
    "unknown-have": [b"want " + C6, b"have " + UNKNOWN],
    "common-have": [b"want " + C6, b"have " + C4],
    "unknown-then-common": [b"want " + C6, b"have " + UNKNOWN, b"have " + C4],
    "common-not-enough": [b"want " + C6, b"want " + C7, b"have " + C7],
    "done": [b"want " + C6, b"have " + C4, b"done"],
    "wait-for-done": [b"want " + C6, b"wait-for-done", b"have " + C4],
    "deepen-1": [b"want " + C6, b"deepen 1", b"done"],
    "deepen-3": [b"want " + C6, b"want " + C7, b"deepen 3", b"done"],
    "deepen-since": [b"want " + C6, b"deepen-since 1112912200", b"done"],
    "deepen-not": [b"want " + C6, b"deepen-not refs/heads/feature", b"done"],
    "deepen-relative": [
        b"want " + C6,
        b"shallow " + C6,
        b"deepen 1",
        b"deepen-relative",
        b"have " + C6,
        b"done",
    ],
    "unshallow": [b"want " + C6, b"shallow " + M5, b"deepen 2147483647", b"have " + C6, b"done"],
    "filter-blob-limit": [b"want " + C6, b"filter blob:limit=100", b"done"],
    "filter-tree-0": [b"want " + C6, b"filter tree:0", b"done"],
    "filter-tree-1": [b"want " + C6, b"filter tree:1", b"done"],
    "filter-combine": [b"want " + C6, b"filter combine:blob:none+tree:2", b"done"],
    "filter-blob-none": [b"want " + C6, b"filter blob:none", b"done"],
    "no-progress": [b"want " + C6, b"no-progress", b"done"],
}


def shallow_sorted(lines: list) -> list:
    """The lines with each run of shallow/unshallow lines sorted: their order carries no meaning
    (git's follows its walk)."""
    out: list = []
    run: list = []
    for line in [*lines, None]:
        if isinstance(line, bytes) and line.startswith((b"shallow ", b"unshallow ")):
            run.append(line)
            continue
        out.extend(sorted(run))
        run = []
        if line is not None:
            out.append(line)
    return out


@pytest.mark.parametrize("case", list(V2_CASES), ids=list(V2_CASES))
def test_v2_negotiation_as_git(served, repo_c6, case: str) -> None:
    body = v2_body(V2_CASES[case])
    mine = demux(pkts(answer(upload_pack_v2(repo_c6, body))))
    theirs = demux(pkts(git_answer(served.repo, body, v2=True)))
    assert shallow_sorted(mine.lines) == shallow_sorted(theirs.lines)
    assert bool(mine.bands[1]) == bool(theirs.bands[1])
    assert bool(mine.bands[2]) == bool(theirs.bands[2])
    assert mine.trailer == theirs.trailer
    if theirs.bands[1]:
        got, expected = sent_objects(mine.bands[1], repo_c6), sent_objects(theirs.bands[1], repo_c6)
        assert got == expected


def test_invalid_filter_is_an_err_line(repo_c6) -> None:
    body = v2_body([b"want " + C6, b"filter frob:nicate", b"done"])
    (line,) = pkts(answer(upload_pack_v2(repo_c6, body)))
    assert line.startswith(b"ERR ") and b"frob:nicate" in line


def test_ls_refs_as_git(served, repo_c6) -> None:
    for args in (
        [],
        [b"symrefs"],
        [b"peel"],
        [b"ref-prefix refs/tags/", b"peel"],
        [b"unborn"],
        [b"ref-prefix HEAD", b"symrefs"],
        [b"ref-prefix refs/heads/m"],
    ):
        body = encode(b"command=ls-refs") + DELIM_PKT + b"".join(encode_line(a) for a in args) + FLUSH_PKT
        assert answer(upload_pack_v2(repo_c6, body)) == git_answer(served.repo, body, v2=True), args


def test_ls_refs_of_an_empty_repository_as_git(served) -> None:
    for args in (
        [b"symrefs", b"unborn"],
        [b"symrefs"],
        [],
        [b"peel", b"symrefs", b"unborn", b"ref-prefix HEAD"],
    ):
        body = encode(b"command=ls-refs") + DELIM_PKT + b"".join(encode_line(a) for a in args) + FLUSH_PKT
        assert answer(upload_pack_v2(Repository("e"), body)) == git_answer(served.empty, body, v2=True), args


def test_unborn_head_only_with_its_symref_target(served) -> None:
    """gitprotocol-v2: an unborn HEAD is sent "in the form unborn HEAD symref-target:<target>";
    git's ls-refs sends it only when the client asked for both ``unborn`` and ``symrefs``."""
    body = encode(b"command=ls-refs") + DELIM_PKT + encode_line(b"unborn") + FLUSH_PKT
    assert (
        answer(upload_pack_v2(Repository("e"), body)) == git_answer(served.empty, body, v2=True) == FLUSH_PKT
    )
