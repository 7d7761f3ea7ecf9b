"""upload-pack: fetch requests (v0/v1 and v2), negotiation answers and ``ls-refs``.

Stateless HTTP means every request carries the whole negotiation so far: the wants, every have the
client still considers relevant, and ``done`` in the last round. The server keeps no state between
requests; it answers each one from the request and the repository alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from protocol.capabilities import parse_capability_list
from protocol.errors import InvalidObjectId, UnexpectedPacket, UnknownCommand
from protocol.pktline import (
    DELIM,
    DELIM_PKT,
    FLUSH,
    FLUSH_PKT,
    Special,
    encode,
    encode_line,
    iter_packets,
    strip_lf,
)

_HEX = frozenset(b"0123456789abcdef")


def parse_oid(text: bytes) -> bytes:
    if len(text) != 40 or not _HEX.issuperset(text):
        raise InvalidObjectId(f"invalid object id {text[:64]!r}")
    return text


@dataclass(slots=True)
class FetchRequest:
    """Everything a fetch asks for, whichever protocol version carried it."""

    wants: list[bytes] = field(default_factory=list)
    haves: list[bytes] = field(default_factory=list)
    done: bool = False
    capabilities: dict[str, str | None] = field(default_factory=dict)
    shallows: list[bytes] = field(default_factory=list)
    depth: int | None = None
    deepen_since: int | None = None
    deepen_not: list[bytes] = field(default_factory=list)
    deepen_relative: bool = False
    filter: str | None = None
    want_refs: list[str] = field(default_factory=list)
    server_options: list[str] = field(default_factory=list)
    version: int = 0
    rounds: int = 0  # v0: flushes after the want list, i.e. negotiation rounds the client closed

    @property
    def deepens(self) -> bool:
        return bool(self.depth or self.deepen_since is not None or self.deepen_not)

    def has(self, cap: str) -> bool:
        return cap in self.capabilities


def _deepen_arg(req: FetchRequest, line: bytes) -> bool:
    """Shared by v0 and v2: shallow/deepen/filter arguments. True when ``line`` was one."""
    if line.startswith(b"shallow "):
        req.shallows.append(parse_oid(line[8:]))
    elif line.startswith(b"deepen "):
        try:
            req.depth = int(line[7:])
        except ValueError:
            raise UnexpectedPacket(f"invalid deepen: {line[7:]!r}") from None
    elif line.startswith(b"deepen-since "):
        try:
            req.deepen_since = int(line[13:])
        except ValueError:
            raise UnexpectedPacket(f"invalid deepen-since: {line[13:]!r}") from None
    elif line.startswith(b"deepen-not "):
        req.deepen_not.append(line[11:])
    elif line == b"deepen-relative":
        req.deepen_relative = True
    elif line.startswith(b"filter "):
        req.filter = line[7:].decode("utf-8", "replace")
    else:
        return False
    return True


def parse_v0_request(body: bytes) -> FetchRequest:
    """Parse a v0/v1 upload-pack POST body: wants (capabilities on the first), shallow and deepen
    lines, a flush, then haves in flush-separated rounds and maybe ``done``."""
    req = FetchRequest(version=0)
    in_wants = True
    for pkt in iter_packets(body):
        if pkt is FLUSH:
            if not in_wants:
                req.rounds += 1
            in_wants = False
            continue
        if isinstance(pkt, Special):
            raise UnexpectedPacket(f"unexpected {pkt!r} in upload-pack request")
        line = strip_lf(pkt)
        if line.startswith(b"want "):
            if not in_wants:
                raise UnexpectedPacket("want after the want list ended")
            rest = line[5:]
            oid, _, caps = rest.partition(b" ")
            if not req.wants and caps:
                req.capabilities = parse_capability_list(caps)
                # v0 says "deepen relative to my shallow boundary" as a capability, v2 as a line.
                req.deepen_relative = "deepen-relative" in req.capabilities
            req.wants.append(parse_oid(oid))
        elif line.startswith(b"have "):
            req.haves.append(parse_oid(line[5:].split(b" ", 1)[0]))
        elif line == b"done":
            req.done = True
            break
        elif not _deepen_arg(req, line):
            raise UnexpectedPacket(f"unexpected line in upload-pack request: {line[:80]!r}")
    return req


@dataclass(slots=True)
class V2Command:
    """A protocol v2 request: ``command=<name>``, capability lines, then arguments."""

    name: str
    capabilities: dict[str, str | None]
    args: list[bytes]


def parse_v2_command(body: bytes) -> V2Command | None:
    """Parse one v2 command; ``None`` for an empty request (a bare flush, git's probe)."""
    name: str | None = None
    caps: dict[str, str | None] = {}
    args: list[bytes] = []
    section = "caps"
    for pkt in iter_packets(body):
        if pkt is FLUSH:
            break
        if pkt is DELIM:
            if section != "caps":
                raise UnexpectedPacket("second delimiter in a v2 command")
            section = "args"
            continue
        if isinstance(pkt, Special):
            raise UnexpectedPacket(f"unexpected {pkt!r} in a v2 command")
        line = strip_lf(pkt)
        if section == "args":
            args.append(line)
        elif line.startswith(b"command="):
            name = line[8:].decode("utf-8", "replace")
        else:
            key, eq, value = line.decode("utf-8", "replace").partition("=")
            caps[key] = value if eq else None
    if name is None:
        if caps or args:
            raise UnexpectedPacket("v2 request without a command")
        return None
    return V2Command(name, caps, args)


def parse_v2_fetch(cmd: V2Command) -> FetchRequest:
    req = FetchRequest(version=2)
    for key, value in cmd.capabilities.items():
        if key == "server-option" and value is not None:
            req.server_options.append(value)
    for line in cmd.args:
        if line.startswith(b"want "):
            req.wants.append(parse_oid(line[5:]))
        elif line.startswith(b"have "):
            req.haves.append(parse_oid(line[5:]))
        elif line == b"done":
            req.done = True
        elif line.startswith(b"want-ref "):
            req.want_refs.append(line[9:].decode("utf-8", "replace"))
        elif _deepen_arg(req, line):
            pass
        elif line.startswith(b"packfile-uris "):
            pass  # we never offer packfile URIs, so the list is moot
        else:
            word = line.decode("utf-8", "replace")
            if " " in word:
                raise UnexpectedPacket(f"fetch: unexpected argument {word[:80]!r}")
            req.capabilities[word] = None
    return req


@dataclass(slots=True)
class LsRefsRequest:
    peel: bool = False
    symrefs: bool = False
    unborn: bool = False
    prefixes: list[str] = field(default_factory=list)


def parse_v2_ls_refs(cmd: V2Command) -> LsRefsRequest:
    req = LsRefsRequest()
    for line in cmd.args:
        if line == b"peel":
            req.peel = True
        elif line == b"symrefs":
            req.symrefs = True
        elif line == b"unborn":
            req.unborn = True
        elif line.startswith(b"ref-prefix "):
            req.prefixes.append(line[11:].decode("utf-8", "replace"))
        else:
            raise UnexpectedPacket(f"ls-refs: unexpected argument {line[:80]!r}")
    return req


@dataclass(slots=True)
class ObjectInfoRequest:
    size: bool = False
    oids: list[bytes] = field(default_factory=list)


def parse_v2_object_info(cmd: V2Command) -> ObjectInfoRequest:
    req = ObjectInfoRequest()
    for line in cmd.args:
        if line == b"size":
            req.size = True
        elif line.startswith(b"oid "):
            req.oids.append(parse_oid(line[4:]))
        else:
            raise UnexpectedPacket(f"object-info: unexpected argument {line[:80]!r}")
    return req


def object_info_response(req: ObjectInfoRequest, sizes: Sequence[int | None]) -> bytes:
    """``size`` then ``<oid> <size>`` per object (``<oid> `` when unknown), as git writes them:
    without trailing LF."""
    out = [encode(b"size")] if req.size else []
    for oid, size in zip(req.oids, sizes, strict=True):
        line = oid
        if req.size:
            line += b" " if size is None else b" %d" % size
        out.append(encode(line))
    out.append(FLUSH_PKT)
    return b"".join(out)


def check_command(cmd: V2Command, offered: Iterable[str]) -> None:
    if cmd.name not in offered:
        raise UnknownCommand(f"invalid command '{cmd.name}'")


@dataclass(frozen=True, slots=True)
class LsRefsEntry:
    name: str
    oid: bytes | None  # None: unborn (only HEAD)
    symref_target: str | None = None
    peeled: bytes | None = None


def ls_refs_response(entries: Iterable[LsRefsEntry]) -> bytes:
    out: list[bytes] = []
    for e in entries:
        line = (b"unborn" if e.oid is None else e.oid) + b" " + e.name.encode()
        if e.symref_target:
            line += b" symref-target:" + e.symref_target.encode()
        if e.peeled:
            line += b" peeled:" + e.peeled
        out.append(encode_line(line))
    out.append(FLUSH_PKT)
    return b"".join(out)


def ref_matches(name: str, prefixes: Sequence[str]) -> bool:
    return not prefixes or any(name.startswith(p) for p in prefixes)


@dataclass(slots=True)
class Negotiation:
    """What the server concluded from one request's haves."""

    common: list[bytes]
    ready: bool
    unknown_seen: bool


def negotiate(
    req: FetchRequest,
    is_common: Callable[[bytes], bool],
    ok_to_give_up: Callable[[list[bytes]], bool],
) -> Negotiation:
    """Sort the haves into common and unknown, and decide whether the server has enough.

    ``ok_to_give_up(common)`` says whether every want reaches one of the common commits, i.e. a
    pack can be made now that sends little the client already has.
    """
    common = [h for h in dict.fromkeys(req.haves) if is_common(h)]
    unknown = len(common) < len(set(req.haves))
    ready = bool(common) and ok_to_give_up(common)
    return Negotiation(common, ready, unknown)


def v0_acks(req: FetchRequest, neg: Negotiation) -> tuple[bytes, bool]:
    """The ACK/NAK lines of a v0 answer and whether a pack follows them.

    Mirrors git's upload-pack in stateless mode: per common have ``ACK <id> common`` (or
    ``continue``), ``ready`` once the server can stop, ``NAK`` at each round's flush, and the final
    ``ACK <last>`` (or ``NAK``) before the pack.
    """
    multi_ack = "multi_ack_detailed" if req.has("multi_ack_detailed") else (
        "multi_ack" if req.has("multi_ack") else None)
    out: list[bytes] = []
    last: bytes | None = None
    for oid in neg.common:
        last = oid
        if multi_ack == "multi_ack_detailed":
            out.append(encode_line(b"ACK " + oid + b" common"))
        elif multi_ack:
            out.append(encode_line(b"ACK " + oid + b" continue"))
        elif len(out) == 0:
            out.append(encode_line(b"ACK " + oid))
    if req.done:
        if neg.common:
            if multi_ack:
                out.append(encode_line(b"ACK " + neg.common[-1]))
        else:
            out.append(encode_line(b"NAK"))
        return b"".join(out), True
    if req.rounds == 0:
        return b"", False  # only the want list (a shallow clone's first request): no round yet
    sent_ready = False
    if multi_ack == "multi_ack_detailed" and neg.ready and last is not None:
        out.append(encode_line(b"ACK " + last + b" ready"))
        sent_ready = True
    if not neg.common or multi_ack:
        out.append(encode_line(b"NAK"))
    if req.has("no-done") and sent_ready and last is not None:
        out.append(encode_line(b"ACK " + last))
        return b"".join(out), True
    return b"".join(out), False


def v2_acknowledgments(req: FetchRequest, neg: Negotiation) -> tuple[bytes, bool]:
    """The v2 ``acknowledgments`` section (when ``done`` was not sent) and whether a pack follows.

    After ``ready`` a delimiter introduces the packfile section; otherwise the answer ends with a
    flush and the client sends another round.
    """
    if req.done:
        return b"", True
    out = [encode_line("acknowledgments")]
    if neg.common:
        out.extend(encode_line(b"ACK " + oid) for oid in neg.common)
    else:
        out.append(encode_line("NAK"))
    ready = neg.ready and not req.has("wait-for-done")
    if ready:
        out.append(encode_line("ready"))
        out.append(DELIM_PKT)
        return b"".join(out), True
    out.append(FLUSH_PKT)
    return b"".join(out), False


#: ``deepen 2147483647`` is how ``git fetch --unshallow`` asks for all history.
INFINITE_DEPTH = 0x7FFFFFFF


def shallow_lines(shallow: Iterable[bytes], unshallow: Iterable[bytes]) -> bytes:
    return b"".join(
        [encode(b"shallow " + oid) for oid in sorted(shallow)]
        + [encode(b"unshallow " + oid) for oid in unshallow]
    )


def v0_shallow_section(shallow: Iterable[bytes], unshallow: Iterable[bytes]) -> bytes:
    """v0: the shallow update precedes the ACK/NAK lines and ends with a flush."""
    return shallow_lines(shallow, unshallow) + FLUSH_PKT


def v2_shallow_info(shallow: Iterable[bytes], unshallow: Iterable[bytes]) -> bytes:
    return encode_line("shallow-info") + shallow_lines(shallow, unshallow) + DELIM_PKT


def packfile_header() -> bytes:
    return encode_line("packfile")


def error_line(message: str) -> bytes:
    """A fatal error as Git prints it: ``ERR <message>`` in a pkt-line."""
    return encode(b"ERR " + message.encode())


# -- sizing a request before acting on it ---------------------------------------------------------


@dataclass(slots=True)
class RequestCounts:
    """How much one upload-pack request asks for, counted before any of it is acted on, so the
    server can refuse a request out of proportion to the repository without walking its graph."""

    command: str = "fetch"  # v2: the command's name; v0 is always a fetch ("" for an empty probe)
    wants: int = 0
    haves: int = 0
    shallows: int = 0
    deepen_nots: int = 0
    want_refs: int = 0
    ref_prefixes: int = 0  # ls-refs
    oids: int = 0  # object-info
    rounds: int = 0  # v0: negotiation rounds (flushes after the want list) in this one request
    done: bool = False


_COUNTED = (
    (b"want ", "wants"), (b"have ", "haves"), (b"shallow ", "shallows"), (b"deepen-not ", "deepen_nots"),
    (b"want-ref ", "want_refs"), (b"ref-prefix ", "ref_prefixes"), (b"oid ", "oids"),
)


def _count_line(counts: RequestCounts, line: bytes) -> None:
    for prefix, attr in _COUNTED:
        if line.startswith(prefix):
            setattr(counts, attr, getattr(counts, attr) + 1)
            return
    if line == b"done":
        counts.done = True


def count_request(body: bytes, version: int) -> RequestCounts:
    """Count the lines of an upload-pack request body (v0/v1 or one v2 command).

    Only framing errors raise (``PktLineError``); lines the real parsers would refuse are merely
    not counted, and those parsers still see the request afterwards.
    """
    counts = RequestCounts()
    if version != 2:
        in_wants = True
        for pkt in iter_packets(body):
            if pkt is FLUSH:
                counts.rounds += 0 if in_wants else 1
                in_wants = False
            elif isinstance(pkt, bytes):
                _count_line(counts, strip_lf(pkt))
                if counts.done:
                    break
        if not counts.wants:
            counts.command = ""
        return counts
    counts.command = ""
    in_args = False
    for pkt in iter_packets(body):
        if pkt is FLUSH:
            break
        if pkt is DELIM:
            in_args = True
        elif isinstance(pkt, bytes):
            line = strip_lf(pkt)
            if in_args:
                _count_line(counts, line)
            elif line.startswith(b"command="):
                counts.command = line[8:].decode("utf-8", "replace")
    return counts


class PackSniffer:
    """Follows an upload-pack response just far enough to tell whether it carries a pack.

    A clone or fetch that ends in a pack is an operation worth counting; a negotiation round that
    only ACKs is not. The pack begins at a v2 ``packfile`` section header, at side-band data that
    starts with ``PACK``, or (without side-band) at raw ``PACK`` where a pkt-line length would be.
    Feed it response chunks in order; once it has decided it ignores the rest.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.pack = False
        self.error: str | None = None  # an ``ERR`` line's message, when the server refused
        self._decided = False

    def feed(self, chunk: bytes) -> None:
        if self._decided:
            return
        self._buf += chunk
        while not self._decided and len(self._buf) >= 4:
            head = bytes(self._buf[:4])
            if head == b"PACK":
                self.pack = self._decided = True
                break
            try:
                n = int(head, 16)
            except ValueError:
                self._decided = True  # not pkt-lines: nothing more to learn
                break
            if n < 4:
                del self._buf[:4]
                continue
            if len(self._buf) < min(n, 9):
                break
            payload = bytes(self._buf[4:min(n, 64)])
            if payload.startswith(b"\x01PACK") or strip_lf(payload) == b"packfile":
                self.pack = self._decided = True
            elif payload.startswith(b"ERR "):
                if len(self._buf) < n:
                    break
                self.error = strip_lf(bytes(self._buf[8:n])).decode("utf-8", "replace")
                self._decided = True
            elif len(self._buf) < n:
                break
            else:
                del self._buf[:n]
        if self._decided:
            self._buf = bytearray()
