"""One error tree for everything the wire protocol can reject.

Each error carries the HTTP status it should become at the edge; the HTTP layer (and only it) turns
these into responses or Git ``ERR`` lines.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """A request that does not follow Git's protocol."""

    http_status = 400


class PktLineError(ProtocolError):
    """A malformed pkt-line: bad length prefix, truncated packet, oversize payload."""


class UnexpectedPacket(ProtocolError):
    """A well-formed packet that is not allowed at this point of the exchange."""


class UnknownCommand(ProtocolError):
    """A protocol v2 ``command=`` the server does not offer."""


class InvalidObjectId(ProtocolError):
    """An object id that is not 40 lowercase hex digits."""


class NotOurRef(ProtocolError):
    """A ``want`` for an object the client is not allowed to ask for."""


class PackError(ProtocolError):
    """A pack stream that cannot be read: bad header, corrupt data, wrong checksum."""
