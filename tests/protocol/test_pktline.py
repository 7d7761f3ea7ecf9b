"""pkt-line framing: length validation, specials, incremental decoding, and the recorded bodies."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.errors import PktLineError
from protocol.pktline import (
    DELIM,
    FLUSH,
    MAX_PKT_LEN,
    NEED_DATA,
    RESPONSE_END,
    PktLineReader,
    encode,
    encode_all,
    encode_line,
    iter_packets,
    strip_lf,
)
from tests.helpers import TRANSCRIPTS, pkts

SPECIAL_NAMES = {FLUSH: "flush", DELIM: "delim", RESPONSE_END: "response-end"}


def as_plain(packets):
    """govc packets in the form of tests.helpers.pkts (specials as names)."""
    return [SPECIAL_NAMES.get(p, p) if not isinstance(p, bytes) else p for p in packets]


# -- encoding ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "wire"),
    [
        (b"", b"0004"),
        (b"a", b"0005a"),
        (b"version 2\n", b"000eversion 2\n"),
        (b"x" * 65516, b"fff0" + b"x" * 65516),
    ],
)
def test_encode(payload: bytes, wire: bytes) -> None:
    assert encode(payload) == wire


def test_encode_line_adds_lf_and_accepts_str() -> None:
    assert encode_line("command=ls-refs") == b"0014command=ls-refs\n"
    assert encode_line(b"done") == b"0009done\n"


def test_encode_rejects_oversize_payload() -> None:
    with pytest.raises(PktLineError):
        encode(b"x" * (MAX_PKT_LEN - 4 + 1))


def test_encode_all_specials() -> None:
    assert encode_all([b"a", DELIM, b"b", FLUSH, RESPONSE_END]) == b"0005a00010005b00000002"


def test_strip_lf() -> None:
    assert strip_lf(b"done\n") == b"done"
    assert strip_lf(b"done") == b"done"
    assert strip_lf(b"a\n\n") == b"a\n"
    assert strip_lf(b"") == b""


# -- decoding: lengths ------------------------------------------------------------------------


@pytest.mark.parametrize(("wire", "special"), [(b"0000", FLUSH), (b"0001", DELIM), (b"0002", RESPONSE_END)])
def test_special_packets(wire: bytes, special) -> None:
    assert list(iter_packets(wire)) == [special]


def test_empty_data_packet_is_well_formed() -> None:
    assert list(iter_packets(b"0004")) == [b""]


@pytest.mark.parametrize(
    "prefix",
    [
        b"0003",  # lengths 1-3 are not packets; 1 and 2 are specials, 3 is nothing
        b"fff1",  # 65521 > 65520
        b"ffff",
        b"00g5",  # not hex
        b"zzzz",
        b" 005",
        b"+005",
        b"-005",
        b"0x05",
        b"\xff\xff\xff\xff",
        b"\x000\x005",
    ],
)
def test_invalid_length_prefix(prefix: bytes) -> None:
    with pytest.raises(PktLineError):
        list(iter_packets(prefix + b"x" * 70000))
    reader = PktLineReader(prefix + b"x" * 10)
    with pytest.raises(PktLineError):
        reader.next_packet()


def test_maximum_length_is_accepted() -> None:
    payload = (bytes(range(256)) * 256)[: MAX_PKT_LEN - 4]
    assert len(payload) == MAX_PKT_LEN - 4
    assert list(iter_packets(b"fff0" + payload)) == [payload]


def test_uppercase_hex_length_is_accepted() -> None:
    # git's hex parser takes either case
    assert list(iter_packets(b"000Ahello\n")) == [b"hello\n"]


@pytest.mark.parametrize("data", [b"00", b"000", b"000ahel", b"0009done", b"0005a0"])
def test_truncated_input_is_an_error(data: bytes) -> None:
    with pytest.raises(PktLineError):
        list(iter_packets(data))


def test_reader_waits_for_a_whole_packet() -> None:
    reader = PktLineReader()
    assert reader.next_packet() is NEED_DATA
    reader.feed(b"00")
    assert reader.next_packet() is NEED_DATA
    reader.feed(b"09do")
    assert reader.next_packet() is NEED_DATA
    reader.feed(b"ne\n0")
    assert reader.next_packet() == b"done\n"
    assert reader.next_packet() is NEED_DATA
    reader.feed(b"000")
    assert reader.next_packet() is FLUSH
    assert reader.next_packet() is NEED_DATA


def test_take_rest_returns_unframed_tail() -> None:
    reader = PktLineReader(b"0009done\n0000PACK\x00\x00\x00\x02rest")
    assert reader.next_packet() == b"done\n"
    assert reader.next_packet() is FLUSH
    assert reader.take_rest() == b"PACK\x00\x00\x00\x02rest"
    assert reader.buffered == 0


def test_reader_compaction_keeps_data() -> None:
    """Many small feeds with reads in between: the internal buffer trimming must not lose bytes."""
    payloads = [bytes([65 + i % 26]) * (i % 50) for i in range(400)]
    wire = b"".join(encode(p) for p in payloads)
    reader = PktLineReader()
    got = []
    rng = random.Random(7)
    pos = 0
    while pos < len(wire):
        step = rng.randint(1, 90)
        reader.feed(wire[pos : pos + step])
        pos += step
        while (pkt := reader.next_packet()) is not NEED_DATA:
            got.append(pkt)
    assert got == payloads


# -- properties -------------------------------------------------------------------------------

packet = st.one_of(
    st.binary(max_size=300),
    st.sampled_from([FLUSH, DELIM, RESPONSE_END]),
)


@given(st.lists(packet, max_size=30), st.lists(st.integers(min_value=1, max_value=64), max_size=200))
def test_roundtrip_any_slicing(packets, cuts) -> None:
    wire = encode_all(packets)
    assert list(iter_packets(wire)) == packets
    reader = PktLineReader()
    got = []
    pos = 0
    for cut in [*cuts, len(wire)]:
        reader.feed(wire[pos : pos + cut])
        pos += cut
        while (pkt := reader.next_packet()) is not NEED_DATA:
            got.append(pkt)
        if pos >= len(wire):
            break
    assert got == packets
    assert reader.buffered == 0


@given(st.integers(min_value=0, max_value=0xFFFF))
def test_every_length_prefix(n: int) -> None:
    """Every 4-hex-digit prefix is either a special, a packet that decodes, or a PktLineError."""
    wire = b"%04x" % n + b"p" * max(0, n - 4)
    if n in (0, 1, 2):
        assert list(iter_packets(wire)) == [{0: FLUSH, 1: DELIM, 2: RESPONSE_END}[n]]
    elif n == 3 or n > MAX_PKT_LEN:
        with pytest.raises(PktLineError):
            list(iter_packets(wire))
    else:
        assert list(iter_packets(wire)) == [b"p" * (n - 4)]


# -- recorded bodies --------------------------------------------------------------------------


def _pktline_only_bodies():
    """Every recorded body that is pkt-lines only (upload-pack requests, advertisements, ls-refs)."""
    if not TRANSCRIPTS.is_dir():
        return []
    out = []
    for path in sorted(TRANSCRIPTS.glob("*/exchange-*.bin")):
        name = path.name
        data = path.read_bytes()
        if not data or "receive-pack" in name:
            continue
        if name.endswith(".request.bin") and data[:2] == b"\x1f\x8b":
            continue  # gzip; its inflated twin is listed
        # responses with side-band are still pkt-lines; skip bodies with a raw pack after them
        try:
            pkts(data)
        except AssertionError:
            continue
        out.append(pytest.param(data, id=f"{path.parent.name}/{name}"))
    return out


@pytest.mark.parametrize("body", _pktline_only_bodies())
def test_recorded_bodies_decode_and_reencode_byte_for_byte(body: bytes) -> None:
    decoded = list(iter_packets(body))
    assert as_plain(decoded) == pkts(body)
    assert encode_all(decoded) == body


def test_recorded_bodies_were_found() -> None:
    if not TRANSCRIPTS.is_dir():
        pytest.skip("no transcripts")
    assert len(_pktline_only_bodies()) > 40
