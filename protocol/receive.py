"""receive-pack: the push request (commands, options, pack) and the status report.

The reasons a ref update can fail are an enum whose values are Git's own wire strings; the status
report is built from it in one function, so clients print exactly what stock Git servers make
them print (``! [remote rejected] main -> main (failed to update ref)``).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

from protocol.capabilities import parse_capability_list
from protocol.errors import UnexpectedPacket
from protocol.pktline import FLUSH, FLUSH_PKT, NEED_DATA, PktLineReader, Special, encode_line, strip_lf
from protocol.upload import parse_oid

ZERO_ID = b"0" * 40


class RefResult(enum.Enum):
    """Outcome of one ref command; the value is the reason Git puts after ``ng <ref>``."""

    OK = ""
    FUNNY_REFNAME = "funny refname"
    MISSING_OBJECTS = "missing necessary objects"
    LOCK_FAILED = "failed to update ref"
    NON_FAST_FORWARD = "non-fast-forward"
    DELETE_CURRENT = "deletion of the current branch prohibited"
    UNPACKER_ERROR = "unpacker error"
    ATOMIC_FAILURE = "atomic push failure"
    ATOMIC_TRANSACTION_FAILED = "atomic transaction failed"
    HOOK_DECLINED = "pre-receive hook declined"
    UPDATE_HOOK_DECLINED = "hook declined"


@dataclass(frozen=True, slots=True)
class RefCommand:
    old: bytes
    new: bytes
    name: str

    @property
    def is_delete(self) -> bool:
        return self.new == ZERO_ID

    @property
    def is_create(self) -> bool:
        return self.old == ZERO_ID


@dataclass(slots=True)
class PushRequest:
    commands: list[RefCommand] = field(default_factory=list)
    capabilities: dict[str, str | None] = field(default_factory=dict)
    push_options: list[str] = field(default_factory=list)
    shallows: list[bytes] = field(default_factory=list)

    @property
    def expects_pack(self) -> bool:
        """Git sends a pack unless every command is a delete."""
        return any(not c.is_delete for c in self.commands)

    def has(self, cap: str) -> bool:
        return cap in self.capabilities


class PushRequestParser:
    """Incremental parser for a receive-pack POST body.

    Feed body bytes; once :attr:`done` is true, :attr:`request` holds the commands and options and
    :meth:`take_pack_data` returns the pack bytes received so far (the rest of the body is pack).
    """

    def __init__(self) -> None:
        self._reader = PktLineReader()
        self._state = "commands"
        self.request = PushRequest()

    @property
    def done(self) -> bool:
        return self._state == "pack"

    def feed(self, data: bytes) -> None:
        self._reader.feed(data)
        while self._state != "pack":
            pkt = self._reader.next_packet()
            if pkt is NEED_DATA:
                return
            if pkt is FLUSH:
                if self._state == "commands" and self.request.has("push-options") and self.request.commands:
                    self._state = "options"
                else:
                    self._state = "pack"
                continue
            if isinstance(pkt, Special):
                raise UnexpectedPacket(f"unexpected {pkt!r} in receive-pack request")
            assert isinstance(pkt, bytes)
            if self._state == "options":
                self.request.push_options.append(strip_lf(pkt).decode("utf-8", "replace"))
            else:
                self._command(pkt)

    def _command(self, pkt: bytes) -> None:
        line, nul, caps = pkt.partition(b"\x00")
        if nul and not self.request.commands:
            self.request.capabilities = parse_capability_list(strip_lf(caps))
        line = strip_lf(line)
        if line.startswith(b"shallow "):
            self.request.shallows.append(parse_oid(line[8:]))
            return
        parts = line.split(b" ", 2)
        if len(parts) != 3:
            raise UnexpectedPacket(f"malformed push command {line[:100]!r}")
        old, new, name = parts
        self.request.commands.append(
            RefCommand(parse_oid(old), parse_oid(new), name.decode("utf-8", "surrogateescape"))
        )

    def take_pack_data(self) -> bytes:
        return self._reader.take_rest()


@dataclass(frozen=True, slots=True)
class Declined:
    """A ref refused by a hook or validator, with its own one-line reason (git shows it as
    ``! [remote rejected] main -> main (<reason>)``)."""

    reason: str


def report_status(unpack_error: str | None, results: Sequence[tuple[str, RefResult | Declined]]) -> bytes:
    """The report-status (and report-status-v2) answer, one line per command in request order."""
    out = [encode_line("unpack ok" if unpack_error is None else f"unpack {unpack_error}")]
    for name, result in results:
        if result is RefResult.OK:
            out.append(encode_line(f"ok {name}".encode("utf-8", "surrogateescape")))
        else:
            reason = result.reason if isinstance(result, Declined) else result.value
            reason = " ".join(reason.split())[:200] or "declined"
            out.append(encode_line(f"ng {name} {reason}".encode("utf-8", "surrogateescape")))
    out.append(FLUSH_PKT)
    return b"".join(out)
