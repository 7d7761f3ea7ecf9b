"""pkt-line framing: the length-prefixed packets every Git exchange is made of.

A packet is four hex digits giving the total length (prefix included) and then the payload. Three
lengths are special: ``0000`` flush, ``0001`` delimiter (protocol v2) and ``0002`` response end
(protocol v2 over stateless transports). Lengths 3 and below otherwise, and above 65520, are invalid.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from protocol.errors import PktLineError

MAX_PKT_LEN = 65520
MAX_PAYLOAD = MAX_PKT_LEN - 4

FLUSH_PKT = b"0000"
DELIM_PKT = b"0001"
RESPONSE_END_PKT = b"0002"


@dataclass(frozen=True, slots=True)
class Special:
    """A packet with no payload; compared by identity against the three constants below."""

    name: str
    wire: bytes

    def __repr__(self) -> str:
        return self.name


FLUSH = Special("FLUSH", FLUSH_PKT)
DELIM = Special("DELIM", DELIM_PKT)
RESPONSE_END = Special("RESPONSE_END", RESPONSE_END_PKT)
_SPECIALS = {0: FLUSH, 1: DELIM, 2: RESPONSE_END}

Packet = bytes | Special


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = _NeedData()


def encode(payload: bytes) -> bytes:
    """Frame one payload as a pkt-line."""
    n = len(payload) + 4
    if n > MAX_PKT_LEN:
        raise PktLineError(f"pkt-line payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    return b"%04x" % n + payload


def encode_line(text: bytes | str) -> bytes:
    """Frame a text line, adding the trailing LF Git expects on most lines."""
    data = text.encode() if isinstance(text, str) else text
    return encode(data + b"\n")


def encode_all(packets: Iterable[Packet]) -> bytes:
    """Frame a sequence of payloads and special packets into one byte string."""
    return b"".join(p.wire if isinstance(p, Special) else encode(p) for p in packets)


def _parse_length(prefix: bytes) -> int:
    try:
        text = prefix.decode("ascii")
        if len(text) != 4 or not all(c in "0123456789abcdefABCDEF" for c in text):
            raise ValueError
        return int(text, 16)
    except (UnicodeDecodeError, ValueError):
        raise PktLineError(f"bad pkt-line length prefix {prefix!r}") from None


class PktLineReader:
    """Incremental pkt-line decoder: feed bytes in, take packets out.

    ``feed`` accepts any slicing of the stream; ``next_packet`` returns a payload (bytes), one of the
    special packets, or ``NEED_DATA``. ``take_rest`` hands back unframed bytes that follow the
    packets (the pack after a receive-pack command list).
    """

    def __init__(self, data: bytes = b"") -> None:
        self._buf = bytearray(data)
        self._pos = 0

    def feed(self, data: bytes) -> None:
        if self._pos and self._pos > len(self._buf) // 2:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def next_packet(self) -> Packet | _NeedData:
        avail = len(self._buf) - self._pos
        if avail < 4:
            return NEED_DATA
        n = _parse_length(bytes(self._buf[self._pos : self._pos + 4]))
        if n < 4:
            if n in _SPECIALS:
                self._pos += 4
                return _SPECIALS[n]
            raise PktLineError(f"invalid pkt-line length {n}")
        if n > MAX_PKT_LEN:
            raise PktLineError(f"pkt-line length {n} exceeds {MAX_PKT_LEN}")
        if n == 4:
            # An empty data packet; git never sends one, but it is well-formed.
            self._pos += 4
            return b""
        if avail < n:
            return NEED_DATA
        payload = bytes(self._buf[self._pos + 4 : self._pos + n])
        self._pos += n
        return payload

    def take_rest(self) -> bytes:
        rest = bytes(self._buf[self._pos :])
        self._buf.clear()
        self._pos = 0
        return rest

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._pos


def iter_packets(data: bytes) -> Iterator[Packet]:
    """Decode a complete byte string; a truncated final packet is an error."""
    reader = PktLineReader(data)
    while True:
        pkt = reader.next_packet()
        if pkt is NEED_DATA:
            if reader.buffered:
                raise PktLineError("truncated pkt-line at end of input")
            return
        assert not isinstance(pkt, _NeedData)
        yield pkt


def strip_lf(payload: bytes) -> bytes:
    """Drop one trailing LF: Git's lines may or may not carry it, and both mean the same."""
    return payload[:-1] if payload.endswith(b"\n") else payload
