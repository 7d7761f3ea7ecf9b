"""Side-band multiplexing: pack data, progress and errors interleaved in one pkt-line stream."""

from __future__ import annotations

from collections.abc import Iterator

from protocol.pktline import MAX_PAYLOAD, encode

BAND_DATA = 1
BAND_PROGRESS = 2
BAND_ERROR = 3

#: side-band-64k: one byte of band number inside a maximal packet.
MAX_SIDEBAND_DATA = MAX_PAYLOAD - 1  # 65515
#: plain side-band (pre-64k clients): packets of at most 1000 bytes, as git sends them.
MAX_SIDEBAND_SMALL = 995


def sideband_packets(band: int, data: bytes, limit: int = MAX_SIDEBAND_DATA) -> Iterator[bytes]:
    """Split ``data`` into framed side-band packets of at most ``limit`` payload bytes each."""
    prefix = bytes((band,))
    view = memoryview(data)
    for start in range(0, len(data), limit):
        yield encode(prefix + view[start : start + limit].tobytes())


def sideband(band: int, data: bytes, limit: int = MAX_SIDEBAND_DATA) -> bytes:
    return b"".join(sideband_packets(band, data, limit))


def progress(message: str) -> bytes:
    return sideband(BAND_PROGRESS, message.encode())


def error(message: str) -> bytes:
    return sideband(BAND_ERROR, message.encode())
