"""receive-pack requests parsed incrementally, and the report-status encoder, against recordings."""

from __future__ import annotations

import random

import pytest

from protocol.errors import InvalidObjectId, PktLineError, UnexpectedPacket
from protocol.pktline import DELIM_PKT, FLUSH_PKT, encode
from protocol.receive import PushRequestParser, RefResult, report_status
from tests.helpers import C6, C7, ZERO, demux, pkts, split_pkts, transcript

PUSHES = [
    "12-push-new-branch",
    "13-push-delete-branch",
    "14-push-atomic-two-refs",
    "15-push-option-ci-skip",
    "17-push-ref-moved-before-update",
    "20-push-to-empty-repo",
]


def feed_in_slices(body: bytes, seed: int, max_slice: int = 9) -> tuple[PushRequestParser, bytes]:
    """Feed ``body`` in random small slices, as a network would; return the parser and the pack."""
    parser = PushRequestParser()
    rng = random.Random(seed)
    pack: list[bytes] = []
    pos = 0
    while pos < len(body):
        n = rng.randint(1, max_slice)
        chunk = body[pos : pos + n]
        pos += n
        if parser.done:
            pack.append(chunk)
        else:
            parser.feed(chunk)
            if parser.done:
                pack.append(parser.take_pack_data())
    return parser, b"".join(pack)


def recorded_commands(body: bytes) -> tuple[list[tuple[bytes, bytes, str]], list[str], bytes]:
    """Commands, push options and pack of a recorded request, read independently."""
    packets, rest = split_pkts(body)
    commands = []
    options: list[str] = []
    flushes = 0
    for p in packets:
        if p == "flush":
            flushes += 1
            continue
        assert isinstance(p, bytes)
        if flushes == 0:
            line = p.split(b"\x00")[0].rstrip(b"\n")
            old, new, name = line.split(b" ", 2)
            commands.append((old, new, name.decode()))
        else:
            options.append(p.rstrip(b"\n").decode())
    return commands, options, rest


@pytest.mark.parametrize("scenario", PUSHES)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_recorded_push_requests(transcripts, scenario: str, seed: int) -> None:
    body = transcript(scenario, 2, "request")
    parser, pack = feed_in_slices(body, seed)
    assert parser.done
    commands, options, recorded_pack = recorded_commands(body)
    req = parser.request
    assert [(c.old, c.new, c.name) for c in req.commands] == commands
    assert req.push_options == options
    assert pack == recorded_pack
    assert req.has("report-status-v2") and req.has("side-band-64k")
    assert req.capabilities["agent"] == "git/2.39.5"
    assert req.expects_pack == any(c.new != ZERO for c in req.commands)


def test_whole_body_in_one_feed(transcripts) -> None:
    body = transcript("14-push-atomic-two-refs", 2, "request")
    parser = PushRequestParser()
    parser.feed(body)
    assert parser.done
    assert parser.request.has("atomic")
    assert [c.name for c in parser.request.commands] == ["refs/heads/main", "refs/heads/topic"]
    assert parser.take_pack_data().startswith(b"PACK")


def test_delete_only_push_has_no_pack(transcripts) -> None:
    parser, pack = feed_in_slices(transcript("13-push-delete-branch", 2, "request"), 5)
    assert pack == b""
    (cmd,) = parser.request.commands
    assert cmd.is_delete and not cmd.is_create
    assert not parser.request.expects_pack


def test_push_options_section(transcripts) -> None:
    parser, pack = feed_in_slices(transcript("15-push-option-ci-skip", 2, "request"), 9, max_slice=3)
    assert parser.request.push_options == ["ci.skip"]
    assert pack.startswith(b"PACK")


def test_not_done_until_the_flush() -> None:
    line = encode(ZERO + b" " + C6 + b" refs/heads/x\x00report-status")
    parser = PushRequestParser()
    parser.feed(line)
    assert not parser.done
    assert len(parser.request.commands) == 1
    parser.feed(b"00")
    assert not parser.done
    parser.feed(b"00PACK")
    assert parser.done
    assert parser.take_pack_data() == b"PACK"


def test_options_need_the_capability() -> None:
    """Without ``push-options`` the first flush ends the commands and the rest is pack data."""
    body = encode(ZERO + b" " + C6 + b" refs/heads/x\x00report-status") + FLUSH_PKT + b"000bci.skip0000"
    parser = PushRequestParser()
    parser.feed(body)
    assert parser.done
    assert parser.request.push_options == []
    assert parser.take_pack_data() == b"000bci.skip0000"


def test_capabilities_only_on_the_first_command() -> None:
    body = (
        encode(ZERO + b" " + C6 + b" refs/heads/a\x00report-status atomic")
        + encode(ZERO + b" " + C7 + b" refs/heads/b\x00side-band-64k")
        + FLUSH_PKT
    )
    parser = PushRequestParser()
    parser.feed(body)
    assert set(parser.request.capabilities) == {"report-status", "atomic"}
    assert [c.name for c in parser.request.commands] == ["refs/heads/a", "refs/heads/b"]


def test_shallow_line() -> None:
    body = encode(b"shallow " + C7) + encode(ZERO + b" " + C6 + b" refs/heads/a\x00report-status") + FLUSH_PKT
    parser = PushRequestParser()
    parser.feed(body)
    assert parser.request.shallows == [C7]
    assert len(parser.request.commands) == 1


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (encode(ZERO + b" " + C6) + FLUSH_PKT, UnexpectedPacket),
        (encode(ZERO + b" " + C6 + b" refs/heads/x") + DELIM_PKT, UnexpectedPacket),
        (encode(b"z" * 40 + b" " + C6 + b" refs/heads/x") + FLUSH_PKT, InvalidObjectId),
        (encode(ZERO + b" " + C6[:39] + b" refs/heads/x") + FLUSH_PKT, InvalidObjectId),
        (b"00z1" + FLUSH_PKT, PktLineError),
        (b"0003" + FLUSH_PKT, PktLineError),
    ],
    ids=["two-fields", "delim", "bad-old", "short-new", "bad-length", "length-3"],
)
def test_malformed_requests(body: bytes, error: type[Exception]) -> None:
    parser = PushRequestParser()
    with pytest.raises(error):
        parser.feed(body)


# -- report-status ----------------------------------------------------------------------------


def recorded_report(scenario: str) -> bytes:
    """Band 1 of the recorded receive-pack response: the report-status pkt-lines."""
    d = demux(pkts(transcript(scenario, 2, "response")))
    assert d.trailer == ["flush"]
    return d.bands[1]


@pytest.mark.parametrize(
    ("scenario", "results"),
    [
        ("12-push-new-branch", [("refs/heads/topic", RefResult.OK)]),
        ("13-push-delete-branch", [("refs/heads/feature", RefResult.OK)]),
        ("14-push-atomic-two-refs", [("refs/heads/main", RefResult.OK), ("refs/heads/topic", RefResult.OK)]),
        ("17-push-ref-moved-before-update", [("refs/heads/main", RefResult.LOCK_FAILED)]),
        ("20-push-to-empty-repo", [("refs/heads/main", RefResult.OK)]),
    ],
)
def test_report_status_matches_recording(transcripts, scenario: str, results) -> None:
    assert report_status(None, results) == recorded_report(scenario)


def test_report_status_unpack_error_and_order() -> None:
    out = report_status(
        "index-pack abnormal exit",
        [("refs/heads/b", RefResult.UNPACKER_ERROR), ("refs/heads/a", RefResult.UNPACKER_ERROR)],
    )
    assert pkts(out) == [
        b"unpack index-pack abnormal exit\n",
        b"ng refs/heads/b unpacker error\n",
        b"ng refs/heads/a unpacker error\n",
        "flush",
    ]


@pytest.mark.parametrize(
    ("result", "reason"),
    [
        (RefResult.FUNNY_REFNAME, "funny refname"),
        (RefResult.MISSING_OBJECTS, "missing necessary objects"),
        (RefResult.LOCK_FAILED, "failed to update ref"),
        (RefResult.DELETE_CURRENT, "deletion of the current branch prohibited"),
        (RefResult.ATOMIC_FAILURE, "atomic push failure"),
        (RefResult.UNPACKER_ERROR, "unpacker error"),
    ],
)
def test_ng_reasons_are_gits_strings(result: RefResult, reason: str) -> None:
    assert pkts(report_status(None, [("refs/heads/x", result)]))[1] == f"ng refs/heads/x {reason}\n".encode()
