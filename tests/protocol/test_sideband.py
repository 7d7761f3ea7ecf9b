"""Side-band multiplexing: packet sizes for side-band-64k and plain side-band, band bytes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.pktline import MAX_PKT_LEN
from protocol.sideband import (
    BAND_DATA,
    BAND_ERROR,
    BAND_PROGRESS,
    MAX_SIDEBAND_DATA,
    MAX_SIDEBAND_SMALL,
    error,
    progress,
    sideband,
    sideband_packets,
)
from tests.helpers import pkts

#: git's DEFAULT_PACKET_MAX: plain side-band packets are at most 1000 bytes, length prefix included
#: (gitprotocol-capabilities: "side-band ... up to 1000 bytes"; sideband.c send_sideband).
SIDEBAND_PACKET_MAX = 1000


def test_64k_data_limit_is_65515() -> None:
    assert MAX_SIDEBAND_DATA == 65515
    assert MAX_SIDEBAND_DATA + 1 + 4 == MAX_PKT_LEN


def test_splits_at_65515_bytes() -> None:
    data = bytes(range(256)) * 600  # 153600 bytes = 65515 + 65515 + 22570
    packets = list(sideband_packets(BAND_DATA, data))
    assert [len(p) for p in packets] == [65520, 65520, 22570 + 5]
    assert packets[0][:4] == b"fff0"
    payloads = pkts(b"".join(packets))
    assert all(p[:1] == b"\x01" for p in payloads)
    assert b"".join(p[1:] for p in payloads) == data


@pytest.mark.parametrize("size", [1, 65514, 65515])
def test_up_to_65515_bytes_is_one_packet(size: int) -> None:
    packets = list(sideband_packets(BAND_DATA, b"x" * size))
    assert len(packets) == 1
    assert packets[0] == b"%04x\x01" % (size + 5) + b"x" * size


def test_65516_bytes_is_two_packets() -> None:
    packets = list(sideband_packets(BAND_DATA, b"x" * 65516))
    assert [len(p) for p in packets] == [65520, 6]


def test_empty_data_makes_no_packet() -> None:
    assert list(sideband_packets(BAND_DATA, b"")) == []
    assert sideband(BAND_PROGRESS, b"") == b""


def test_plain_side_band_packets_fit_in_1000_bytes() -> None:
    """A client that only said ``side-band`` gets packets of at most 1000 bytes in all (git sends
    995 data bytes per packet)."""
    packets = list(sideband_packets(BAND_DATA, b"y" * 5000, MAX_SIDEBAND_SMALL))
    assert max(len(p) for p in packets) <= SIDEBAND_PACKET_MAX
    assert b"".join(p[1:] for p in pkts(b"".join(packets))) == b"y" * 5000


def test_progress_and_error_bands() -> None:
    assert progress("Counting objects: 1\n") == b"0019\x02Counting objects: 1\n"
    assert error("boom\n") == b"000a\x03boom\n"
    assert (BAND_DATA, BAND_PROGRESS, BAND_ERROR) == (1, 2, 3)


@given(st.binary(max_size=5000), st.integers(min_value=1, max_value=2000), st.sampled_from([1, 2, 3]))
def test_split_and_join_any_limit(data: bytes, limit: int, band: int) -> None:
    packets = list(sideband_packets(band, data, limit))
    payloads = pkts(b"".join(packets))
    assert all(len(p) - 1 <= limit for p in payloads)
    assert all(p[0] == band for p in payloads)
    # every packet but the last is full
    assert all(len(p) - 1 == limit for p in payloads[:-1])
    assert b"".join(p[1:] for p in payloads) == data
