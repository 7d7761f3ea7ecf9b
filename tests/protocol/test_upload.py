"""upload-pack requests (v0 and v2), ls-refs formatting and negotiation answers, sans-IO."""

from __future__ import annotations

import gzip

import pytest

from protocol.errors import InvalidObjectId, PktLineError, UnexpectedPacket, UnknownCommand
from protocol.pktline import DELIM_PKT, FLUSH_PKT, encode, encode_line
from protocol.upload import (
    FetchRequest,
    LsRefsEntry,
    Negotiation,
    check_command,
    error_line,
    ls_refs_response,
    negotiate,
    parse_oid,
    parse_v0_request,
    parse_v2_command,
    parse_v2_fetch,
    parse_v2_ls_refs,
    ref_matches,
    v0_acks,
    v2_acknowledgments,
)
from tests.helpers import C2, C4, C6, C7, C8, M5, V1_0, ZERO, pkts, transcript

UNKNOWN = b"1" * 40


def recorded_args(body: bytes, prefix: bytes) -> list[bytes]:
    """The ids of the recorded request's lines starting with ``prefix`` (independent parse)."""
    return [
        p[len(prefix) : len(prefix) + 40] for p in pkts(body) if isinstance(p, bytes) and p.startswith(prefix)
    ]


# -- object ids -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [b"", b"1" * 39, b"1" * 41, b"A" * 40, b"g" * 40, b"938d1683b98c7e45d8eadb36ffea6ccbcdaaad5 ", b" " * 40],
)
def test_parse_oid_rejects(text: bytes) -> None:
    with pytest.raises(InvalidObjectId):
        parse_oid(text)


def test_parse_oid_accepts_lowercase_hex() -> None:
    assert parse_oid(C6) == C6


# -- v0 requests ------------------------------------------------------------------------------


def test_v0_clone_request(transcripts) -> None:
    body = transcript("02-clone-v0", 2, "request")
    req = parse_v0_request(body)
    assert req.version == 0
    assert req.wants == recorded_args(body, b"want ")
    assert req.wants == [C7, C6, C2, V1_0]
    assert req.haves == []
    assert req.done
    for cap in ("multi_ack_detailed", "no-done", "side-band-64k", "thin-pack", "ofs-delta"):
        assert req.has(cap)
    assert req.capabilities["agent"] == "git/2.39.5"
    assert not req.has("include-tag")


def test_v0_incremental_request(transcripts) -> None:
    body = transcript("07-fetch-incremental-v0", 2, "request")
    req = parse_v0_request(body)
    assert req.wants == [C8]
    assert req.haves == recorded_args(body, b"have ") == [C7, C6, M5, C2]
    assert req.done
    assert req.has("include-tag")


@pytest.mark.parametrize("exchange", [2, 3, 4])
def test_v0_many_haves_rounds(transcripts, exchange: int) -> None:
    body = transcript("22-fetch-many-haves-v0", exchange, "request")
    req = parse_v0_request(body)
    assert req.wants == [C8]
    assert req.haves == recorded_args(body, b"have ")
    assert len(req.haves) == {2: 16, 3: 16, 4: 12}[exchange]
    assert req.done == (exchange == 4)


def test_v0_deepen_and_shallow_arguments() -> None:
    body = (
        encode_line(b"want " + C6 + b" multi_ack_detailed shallow")
        + encode(b"shallow " + C4)
        + encode(b"deepen 3")
        + FLUSH_PKT
        + encode_line(b"done")
    )
    req = parse_v0_request(body)
    assert req.shallows == [C4]
    assert req.depth == 3
    assert req.done


@pytest.mark.parametrize(
    "body",
    [
        encode_line(b"want " + C6) + FLUSH_PKT + encode_line(b"want " + C4) + encode_line(b"done"),
        encode_line(b"want " + C6) + DELIM_PKT + encode_line(b"done"),
        encode_line(b"want " + C6.upper()) + FLUSH_PKT + encode_line(b"done"),
        encode_line(b"want " + C6) + FLUSH_PKT + encode_line(b"have 1234") + encode_line(b"done"),
        encode_line(b"want " + C6) + FLUSH_PKT + encode_line(b"frobnicate") + encode_line(b"done"),
        encode_line(b"want " + C6) + encode_line(b"deepen x") + FLUSH_PKT,
    ],
    ids=["want-after-flush", "delim", "uppercase-oid", "short-have", "unknown-line", "bad-deepen"],
)
def test_v0_bad_requests(body: bytes) -> None:
    with pytest.raises((UnexpectedPacket, InvalidObjectId)):
        parse_v0_request(body)


def test_v0_truncated_request() -> None:
    with pytest.raises(PktLineError):
        parse_v0_request(encode_line(b"want " + C6)[:-3])


# -- v2 requests ------------------------------------------------------------------------------


def test_v2_ls_refs_request(transcripts) -> None:
    cmd = parse_v2_command(transcript("01-clone-v2", 2, "request"))
    assert cmd is not None
    assert cmd.name == "ls-refs"
    assert cmd.capabilities == {"agent": "git/2.39.5", "object-format": "sha1"}
    req = parse_v2_ls_refs(cmd)
    assert (req.peel, req.symrefs, req.unborn) == (True, True, True)
    assert req.prefixes == ["HEAD", "refs/heads/", "refs/tags/"]


def test_v2_fetch_request(transcripts) -> None:
    body = transcript("01-clone-v2", 3, "request")
    cmd = parse_v2_command(body)
    assert cmd is not None and cmd.name == "fetch"
    req = parse_v2_fetch(cmd)
    assert req.version == 2
    # the client sends the same want twice; the request keeps what was sent
    assert req.wants == recorded_args(body, b"want ") == [C6, C7, C6, C2, V1_0]
    assert req.haves == []
    assert req.done
    assert req.has("thin-pack") and req.has("ofs-delta")
    assert not req.has("include-tag")


def test_v2_fetch_with_haves_no_done(transcripts) -> None:
    body = transcript("06-fetch-incremental-v2", 3, "request")
    req = parse_v2_fetch(parse_v2_command(body))
    assert req.wants == [C8]
    assert req.haves == recorded_args(body, b"have ")
    assert not req.done
    assert req.has("include-tag")


def test_v2_gzip_body_inflates_to_the_recorded_request(transcripts) -> None:
    raw = transcript("21-fetch-many-haves-v2", 4, "request")
    inflated = transcript("21-fetch-many-haves-v2", 4, "request.inflated")
    assert gzip.decompress(raw) == inflated
    req = parse_v2_fetch(parse_v2_command(inflated))
    assert len(req.haves) == 28
    assert req.haves[-4:] == [C7, C6, M5, C2]


def test_v2_bare_flush_is_no_command() -> None:
    assert parse_v2_command(FLUSH_PKT) is None
    assert parse_v2_command(b"") is None


@pytest.mark.parametrize(
    "body",
    [
        encode_line(b"agent=x") + DELIM_PKT + encode_line(b"peel") + FLUSH_PKT,
        encode_line(b"command=fetch") + DELIM_PKT + encode_line(b"done") + DELIM_PKT + FLUSH_PKT,
        encode_line(b"command=fetch") + b"0002" + FLUSH_PKT,
    ],
    ids=["no-command", "second-delim", "response-end"],
)
def test_v2_malformed_commands(body: bytes) -> None:
    with pytest.raises(UnexpectedPacket):
        parse_v2_command(body)


def test_v2_unknown_command() -> None:
    cmd = parse_v2_command(encode_line(b"command=object-info") + FLUSH_PKT)
    assert cmd is not None
    with pytest.raises(UnknownCommand):
        check_command(cmd, ("ls-refs", "fetch"))
    check_command(parse_v2_command(encode_line(b"command=fetch") + FLUSH_PKT), ("ls-refs", "fetch"))


def test_v2_fetch_rejects_bad_arguments() -> None:
    cmd = parse_v2_command(
        encode_line(b"command=fetch") + DELIM_PKT + encode_line(b"want " + b"z" * 40) + FLUSH_PKT
    )
    with pytest.raises(InvalidObjectId):
        parse_v2_fetch(cmd)
    cmd = parse_v2_command(
        encode_line(b"command=fetch") + DELIM_PKT + encode_line(b"what is this") + FLUSH_PKT
    )
    with pytest.raises(UnexpectedPacket):
        parse_v2_fetch(cmd)


def test_v2_ls_refs_rejects_unknown_argument() -> None:
    cmd = parse_v2_command(encode_line(b"command=ls-refs") + DELIM_PKT + encode_line(b"frob") + FLUSH_PKT)
    with pytest.raises(UnexpectedPacket):
        parse_v2_ls_refs(cmd)


def test_v2_fetch_server_options_and_want_ref() -> None:
    body = (
        encode(b"command=fetch")
        + encode(b"server-option=ci.skip")
        + DELIM_PKT
        + encode_line(b"want-ref refs/heads/main")
        + encode_line(b"done")
        + FLUSH_PKT
    )
    req = parse_v2_fetch(parse_v2_command(body))
    assert req.server_options == ["ci.skip"]
    assert req.want_refs == ["refs/heads/main"]


# -- ls-refs answers --------------------------------------------------------------------------


def test_ls_refs_unborn_head_matches_recording(transcripts) -> None:
    out = ls_refs_response([LsRefsEntry("HEAD", None, "refs/heads/main")])
    assert out == transcript("19-clone-empty-v2", 2, "response")


def test_ls_refs_symref_and_peeled_matches_recording(transcripts) -> None:
    entries = [
        LsRefsEntry("HEAD", C6, "refs/heads/main"),
        LsRefsEntry("refs/heads/feature", C7),
        LsRefsEntry("refs/heads/main", C6),
        LsRefsEntry("refs/tags/light", C2),
        LsRefsEntry("refs/tags/v1.0", V1_0, None, M5),
    ]
    assert ls_refs_response(entries) == transcript("01-clone-v2", 2, "response")


def test_ref_prefix_matching() -> None:
    assert ref_matches("refs/heads/main", [])
    assert ref_matches("refs/heads/main", ["refs/tags/", "refs/heads/"])
    assert not ref_matches("refs/heads/main", ["refs/heads/mainline"])
    assert ref_matches("HEAD", ["HEAD"])


def test_error_line() -> None:
    assert error_line("upload-pack: not our ref " + "1" * 40) == (
        b"0049ERR upload-pack: not our ref " + b"1" * 40
    )


# -- negotiation ------------------------------------------------------------------------------


def v0_request(caps: str, haves: list[bytes], done: bool) -> FetchRequest:
    """A stateless v0 request as a client sends it: want (with caps), flush, haves, flush or done."""
    body = encode_line(b"want " + C6 + (b" " + caps.encode() if caps else b"")) + FLUSH_PKT
    body += b"".join(encode_line(b"have " + h) for h in haves)
    body += encode_line(b"done") if done else FLUSH_PKT
    return parse_v0_request(body)


def neg_for(req: FetchRequest, common: set[bytes], give_up: bool) -> Negotiation:
    return negotiate(req, lambda oid: oid in common, lambda _c: give_up)


def test_negotiate_sorts_haves() -> None:
    req = v0_request("", [UNKNOWN, C4, C2, C4], False)
    neg = neg_for(req, {C4, C2}, True)
    assert neg.common == [C4, C2]
    assert neg.unknown_seen
    assert neg.ready
    neg = neg_for(req, set(), True)
    assert neg.common == [] and not neg.ready


def test_negotiate_needs_a_common_have_to_be_ready() -> None:
    req = v0_request("", [UNKNOWN], False)
    assert not neg_for(req, set(), True).ready


def test_v0_multi_ack_detailed_with_done_matches_07(transcripts) -> None:
    """07: four common haves and done -> ACK common x4, final ACK; a pack follows."""
    req = parse_v0_request(transcript("07-fetch-incremental-v0", 2, "request"))
    neg = neg_for(req, set(req.haves), True)
    acks, pack = v0_acks(req, neg)
    assert pack
    recorded = transcript("07-fetch-incremental-v0", 2, "response")
    assert recorded.startswith(acks)
    assert [p for p in pkts(acks)] == [
        b"ACK " + C7 + b" common\n",
        b"ACK " + C6 + b" common\n",
        b"ACK " + M5 + b" common\n",
        b"ACK " + C2 + b" common\n",
        b"ACK " + C2 + b"\n",
    ]


def test_v0_round_without_common_is_a_bare_nak(transcripts) -> None:
    req = parse_v0_request(transcript("22-fetch-many-haves-v0", 2, "request"))
    acks, pack = v0_acks(req, neg_for(req, set(), False))
    assert (acks, pack) == (transcript("22-fetch-many-haves-v0", 2, "response"), False)


def test_v0_ready_with_no_done_sends_pack() -> None:
    req = v0_request("multi_ack_detailed no-done side-band-64k", [C4], False)
    acks, pack = v0_acks(req, neg_for(req, {C4}, True))
    assert pkts(acks) == [
        b"ACK " + C4 + b" common\n",
        b"ACK " + C4 + b" ready\n",
        b"NAK\n",
        b"ACK " + C4 + b"\n",
    ]
    assert pack


def test_v0_ready_without_no_done_waits_for_done() -> None:
    req = v0_request("multi_ack_detailed side-band-64k", [C4], False)
    acks, pack = v0_acks(req, neg_for(req, {C4}, True))
    assert pkts(acks) == [b"ACK " + C4 + b" common\n", b"ACK " + C4 + b" ready\n", b"NAK\n"]
    assert not pack


def test_v0_multi_ack_continue() -> None:
    req = v0_request("multi_ack side-band-64k", [C4], False)
    acks, pack = v0_acks(req, neg_for(req, {C4}, False))
    assert pkts(acks) == [b"ACK " + C4 + b" continue\n", b"NAK\n"]
    assert not pack


def test_v0_no_multi_ack_acks_first_common_only() -> None:
    req = v0_request("side-band-64k", [C4, C2], True)
    acks, pack = v0_acks(req, neg_for(req, {C4, C2}, True))
    assert pkts(acks) == [b"ACK " + C4 + b"\n"]
    assert pack


def test_v0_no_multi_ack_round_without_common_says_nak() -> None:
    """git's upload-pack answers a flush with NAK whenever nothing in common was found so far
    (``have_obj.nr == 0``), with or without multi_ack; a client without multi_ack waits for it."""
    req = v0_request("side-band-64k", [UNKNOWN], False)
    acks, pack = v0_acks(req, neg_for(req, set(), False))
    assert pkts(acks) == [b"NAK\n"]
    assert not pack


def test_v0_done_without_common_is_nak_then_pack() -> None:
    for caps in ("", "multi_ack", "multi_ack_detailed no-done"):
        req = v0_request(caps, [UNKNOWN], True)
        acks, pack = v0_acks(req, neg_for(req, set(), False))
        assert pkts(acks) == [b"NAK\n"]
        assert pack


def test_v2_acknowledgments_ready_matches_06(transcripts) -> None:
    req = parse_v2_fetch(parse_v2_command(transcript("06-fetch-incremental-v2", 3, "request")))
    acks, pack = v2_acknowledgments(req, neg_for(req, set(req.haves), True))
    assert pack
    assert transcript("06-fetch-incremental-v2", 3, "response").startswith(acks + encode_line(b"packfile"))


def test_v2_acknowledgments_nak_matches_21(transcripts) -> None:
    req = parse_v2_fetch(parse_v2_command(transcript("21-fetch-many-haves-v2", 3, "request")))
    acks, pack = v2_acknowledgments(req, neg_for(req, set(), False))
    assert (acks, pack) == (transcript("21-fetch-many-haves-v2", 3, "response"), False)


def test_v2_common_but_not_ready_ends_with_flush() -> None:
    req = FetchRequest(wants=[C6], haves=[C2], version=2)
    acks, pack = v2_acknowledgments(req, neg_for(req, {C2}, False))
    assert pkts(acks) == [b"acknowledgments\n", b"ACK " + C2 + b"\n", "flush"]
    assert not pack


def test_v2_wait_for_done_never_says_ready() -> None:
    req = FetchRequest(wants=[C6], haves=[C2], version=2, capabilities={"wait-for-done": None})
    acks, pack = v2_acknowledgments(req, neg_for(req, {C2}, True))
    assert b"ready\n" not in pkts(acks)
    assert not pack


def test_v2_done_omits_acknowledgments() -> None:
    req = FetchRequest(wants=[C6], haves=[C2], done=True, version=2)
    assert v2_acknowledgments(req, neg_for(req, {C2}, True)) == (b"", True)


def test_zero_id_is_a_valid_oid_syntax() -> None:
    assert parse_oid(ZERO) == ZERO
