"""The capabilities govc offers, per service and protocol version, in one place."""

from __future__ import annotations

import secrets
from collections.abc import Iterable

AGENT = "govc/0.1.0"
#: This server process's trace id, advertised as git's ``session-id`` (transfer.advertiseSID).
SESSION_ID = f"govc-{secrets.token_hex(8)}"

UPLOAD_PACK_V0 = (
    "multi_ack",
    "multi_ack_detailed",
    "no-done",
    "side-band",
    "side-band-64k",
    "thin-pack",
    "ofs-delta",
    "no-progress",
    "include-tag",
    "shallow",
    "deepen-since",
    "deepen-not",
    "deepen-relative",
    "filter",
    "allow-tip-sha1-in-want",
    "allow-reachable-sha1-in-want",
    "object-format=sha1",
    f"agent={AGENT}",
)

RECEIVE_PACK = (
    "report-status",
    "report-status-v2",
    "delete-refs",
    "side-band-64k",
    "quiet",
    "atomic",
    "ofs-delta",
    "push-options",
    "object-format=sha1",
    f"agent={AGENT}",
)

#: Protocol v2 advertisement lines (after ``version 2``), in the order git itself uses.
UPLOAD_PACK_V2 = (
    f"agent={AGENT}",
    "ls-refs=unborn",
    "fetch=shallow wait-for-done filter",
    "server-option",
    "object-format=sha1",
    "object-info",
    f"session-id={SESSION_ID}",
)

#: Arguments of the v2 ``fetch`` command that take no value and that govc understands.
V2_FETCH_FLAGS = frozenset(
    {"thin-pack", "no-progress", "include-tag", "ofs-delta", "done", "wait-for-done",
     "sideband-all", "deepen-relative"}
)


def parse_capability_list(text: bytes) -> dict[str, str | None]:
    """``a b=c`` -> ``{"a": None, "b": "c"}``; unknown names are kept, as Git ignores them."""
    caps: dict[str, str | None] = {}
    for word in text.decode("utf-8", "replace").split():
        name, eq, value = word.partition("=")
        caps[name] = value if eq else None
    return caps


def format_capabilities(caps: Iterable[str]) -> bytes:
    return " ".join(caps).encode()
