"""Ref advertisements: the first answer of every smart-HTTP exchange."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from protocol.capabilities import format_capabilities
from protocol.pktline import FLUSH_PKT, encode, encode_line

ZERO_ID = b"0" * 40


def service_header(service: str) -> bytes:
    """The smart-HTTP ``# service=...`` preamble (v0 only; v2 has none)."""
    return encode_line(f"# service={service}") + FLUSH_PKT


def v0_refs(
    refs: Sequence[tuple[str, bytes]],
    capabilities: Iterable[str],
    *,
    head: bytes | None = None,
    head_target: str | None = None,
    peeled: Mapping[str, bytes] | None = None,
) -> bytes:
    """A v0/v1 ref advertisement: HEAD first when it resolves, capabilities after a NUL on the
    first line, ``^{}`` lines for annotated tags, and ``capabilities^{}`` when there is no ref."""
    caps = list(capabilities)
    if head is not None and head_target:
        caps.append(f"symref=HEAD:{head_target}")
    capbytes = format_capabilities(caps)
    out: list[bytes] = []
    lines: list[tuple[bytes, bytes]] = []
    if head is not None:
        lines.append((head, b"HEAD"))
    for name, oid in refs:
        lines.append((oid, name.encode()))
        if peeled and name in peeled:
            lines.append((peeled[name], name.encode() + b"^{}"))
    if not lines:
        lines.append((ZERO_ID, b"capabilities^{}"))
    first = True
    for oid, name in lines:
        if first:
            out.append(encode(oid + b" " + name + b"\x00" + capbytes + b"\n"))
            first = False
        else:
            out.append(encode(oid + b" " + name + b"\n"))
    out.append(FLUSH_PKT)
    return b"".join(out)


def v2_capabilities(lines: Iterable[str]) -> bytes:
    return encode_line("version 2") + b"".join(encode_line(c) for c in lines) + FLUSH_PKT
